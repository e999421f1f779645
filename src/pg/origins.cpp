#include "origins.hpp"

#include <optional>

#include "guard.hpp"
#include "node.hpp"
#include "spi.hpp"

namespace pgmesh::origins {

RepOriginId find_or_create(const std::string &name) {
    XLogRecPtr created_at = InvalidXLogRecPtr;
    RepOriginId id = pg::call([&] {
        RepOriginId found = replorigin_by_name(name.c_str(), true);
        if (found != InvalidRepOriginId) return found;
        created_at = GetXLogInsertRecPtr();
        return replorigin_create(name.c_str());
    });
    // Every transaction a former holder of this origin number wrote is in
    // WAL before created_at (relay.hpp).
    if (created_at != InvalidXLogRecPtr)
        if (std::optional<uint64_t> node = node::node_of_origin(name))
            spi::query(
                "INSERT INTO pgmesh.relay_coverage (origin_node_id, origin_created_at) "
                "VALUES ($1, $2) ON CONFLICT (origin_node_id) DO UPDATE SET "
                "origin_created_at = excluded.origin_created_at",
                {spi::int8(static_cast<int64_t>(*node)), spi::lsn(created_at)});
    return id;
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
