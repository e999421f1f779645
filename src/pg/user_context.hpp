// Who pgmesh's code runs as.
//
// pgmesh's workers are superusers, and its SQL functions run in the caller's
// session. Two switches keep those rights from being lent out:
//
//  - switch_to_untrusted(owner): code that belongs to a user (triggers,
//    column defaults, constraints, resolver functions) runs as that user, as
//    PostgreSQL 16's apply does with SwitchToUntrustedUser (CVE-2020-14349,
//    run_as_owner). Unless the owner could become the current user anyway,
//    it runs under SECURITY_RESTRICTED_OPERATION in a settings nest level of
//    its own, so that nothing it SETs outlives the switch.
//  - switch_to_origin_role(role, search_path): replayed DDL runs as the
//    role that ran it on its origin and with its search_path.
//  - switch_to_pgmesh(): pgmesh's own fixed SQL on its catalogs, run on
//    behalf of callers who may not read them (pgmesh_monitor waiting for
//    sync), as the bootstrap superuser with search_path = '' so that no
//    caller's schema can put a function or operator into it.
//
// Both are plain C: they run inside pg::call. On an error the transaction's
// abort puts the user and the settings back, as it does for PostgreSQL's own
// switches; restore() is for the normal path and for callers that go on in
// the same transaction after catching an error.
#pragma once

#include "postgres_headers.hpp"

namespace pgmesh::user_context {

struct Saved {
    Oid user;
    int sec_context;
    int guc_nest_level;  // -1 when no nest level was opened
};

Saved switch_to_untrusted(Oid role);
// Replayed DDL runs as the role that ran it on its origin, with the origin's
// search_path, in a settings nest level of its own.
Saved switch_to_origin_role(Oid role, const char *search_path);
Saved switch_to_pgmesh();
void restore(const Saved &saved);

}  // namespace pgmesh::user_context
