// The relation map: for each relation the peer described, how its columns
// land in the local table, which index finds its rows, which unique indexes
// are probed, as whom changes are applied and how conflicts resolve. Looked
// up on first use and again after a relcache invalidation (as PostgreSQL's
// logical/relation.c and pglogical_relcache.c keep theirs).
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "conflict.hpp"
#include "postgres_headers.hpp"
#include "protocol.hpp"

namespace pgmesh::apply {

// How one remote column lands in the local table.
struct ColumnMap {
    AttrNumber local_attnum = InvalidAttrNumber;  // 0: no such local column
    Oid local_type = InvalidOid;
    int32 local_typmod = -1;
    Oid input_ioparam = InvalidOid;
    FmgrInfo text_input;    // typinput
    FmgrInfo binary_input;  // typreceive
    bool has_binary_input = false;
    // The remote column has another (built-in) type, e.g. int4 against int8:
    // a binary value is read as the remote type and converted through text.
    bool converts = false;
    Oid remote_ioparam = InvalidOid;
    FmgrInfo remote_receive;
    FmgrInfo remote_output;
};

// A unique index other than the primary key, checked for update_exists and
// for inserts colliding on it.
struct UniqueIndex {
    Oid oid = InvalidOid;
    std::vector<AttrNumber> attnums;
};

// How the table resolves each conflict type (pgmesh.conflict_resolver).
struct ResolverChoice {
    conflict::Resolver resolver = conflict::Resolver::kError;
    Oid function = InvalidOid;  // for kUserFunction
};

struct RelationMap {
    proto::Relation remote;
    // pgmesh.conflict_resolver itself: a change to it makes every apply
    // worker of the database read resolvers again (after its commit).
    bool is_resolver_table = false;
    bool resolved = false;  // local side looked up since the last invalidation
    Oid local_relid = InvalidOid;
    Oid owner = InvalidOid;  // changes are applied as this role
    Oid key_index = InvalidOid;
    std::vector<ColumnMap> columns;  // one per remote column
    // Local columns the peer does not send: an inserted row gets their
    // DEFAULT, an updated row keeps its value.
    std::vector<AttrNumber> local_only;
    std::vector<UniqueIndex> unique_indexes;
    std::array<ResolverChoice, conflict::kTypeCount> resolvers;
    uint64_t resolvers_version = UINT64_MAX;  // shmem version they were read at
};

// The peer's relations by their id on the peer.
class RelationMaps {
public:
    RelationMaps();
    RelationMaps(const RelationMaps &) = delete;
    RelationMaps &operator=(const RelationMaps &) = delete;

    // A RELATION message: (re)describes a relation; its local side is looked
    // up again at its next change.
    void describe(const proto::Relation &remote);

    // The relation the peer described as `remote_relid`; throws 08P01 when
    // it described none.
    RelationMap &find(uint32_t remote_relid);

    // Brings the local side of `map` up to date: the table, its columns and
    // indexes when invalidated, and its resolvers when `resolvers_version`
    // (shmem::DatabaseSlot) moved since they were read. Throws when the
    // table or a column the peer sends is missing here.
    void prepare(RelationMap &map, uint64_t resolvers_version);

    // Relcache invalidation: forget local lookups (all when relid is 0).
    void invalidate(Oid relid);

private:
    void lookup_local(RelationMap &map);
    static void load_resolvers(RelationMap &map, uint64_t version);

    std::unordered_map<uint32_t, RelationMap> maps_;
    MemoryContext cache_context_;  // FmgrInfo of the column maps
};

}  // namespace pgmesh::apply
