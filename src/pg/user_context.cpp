#include "user_context.hpp"

namespace pgmesh::user_context {

Saved switch_to_untrusted(Oid role) {
    Saved saved{InvalidOid, 0, -1};
    GetUserIdAndSecContext(&saved.user, &saved.sec_context);
    if (compat::can_set_role(role, saved.user)) {
        // The owner could become us anyway (a superuser, say): restrictions
        // would protect nothing.
        SetUserIdAndSecContext(role, saved.sec_context);
    } else {
        SetUserIdAndSecContext(role, saved.sec_context | SECURITY_RESTRICTED_OPERATION);
        saved.guc_nest_level = NewGUCNestLevel();
    }
    return saved;
}

Saved switch_to_origin_role(Oid role, const char *search_path) {
    Saved saved{InvalidOid, 0, -1};
    GetUserIdAndSecContext(&saved.user, &saved.sec_context);
    SetUserIdAndSecContext(role, saved.sec_context | SECURITY_LOCAL_USERID_CHANGE);
    saved.guc_nest_level = NewGUCNestLevel();
    set_config_option("search_path", search_path, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
                      0, false);
    return saved;
}

Saved switch_to_pgmesh() {
    Saved saved{InvalidOid, 0, -1};
    GetUserIdAndSecContext(&saved.user, &saved.sec_context);
    SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID, saved.sec_context | SECURITY_LOCAL_USERID_CHANGE |
                                                      SECURITY_RESTRICTED_OPERATION);
    saved.guc_nest_level = NewGUCNestLevel();
    set_config_option("search_path", "", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    return saved;
}

void restore(const Saved &saved) {
    if (saved.guc_nest_level >= 0) AtEOXact_GUC(false, saved.guc_nest_level);
    SetUserIdAndSecContext(saved.user, saved.sec_context);
}

}  // namespace pgmesh::user_context
