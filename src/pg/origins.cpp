#include "origins.hpp"

#include "guard.hpp"
#include "node.hpp"

namespace pgmesh::origins {

RepOriginId find_or_create(const std::string &name) {
    return pg::call([&] {
        RepOriginId id = replorigin_by_name(name.c_str(), true);
        if (id == InvalidRepOriginId) id = replorigin_create(name.c_str());
        return id;
    });
}

void start_session(RepOriginId origin) {
    pg::call([&] {
        replorigin_session_setup(origin);
        replorigin_session_origin = origin;
    });
}

void end_session() {
    replorigin_session_reset();
    replorigin_session_origin = InvalidRepOriginId;
}

uint64_t node_of(RepOriginId origin) {
    if (origin == InvalidRepOriginId) return 0;
    char *name = nullptr;
    pg::call([&] { replorigin_by_oid(origin, true, &name); });
    if (!name) return 0;
    return node::node_of_origin(name).value_or(0);
}

void advance(RepOriginId origin, uint64_t lsn) {
    pg::call([&] {
        LockRelationOid(ReplicationOriginRelationId, RowExclusiveLock);
        replorigin_advance(origin, lsn, InvalidXLogRecPtr, true, true);
    });
}

}  // namespace pgmesh::origins
