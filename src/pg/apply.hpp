// Applying decoded pgmesh messages to local tables through the executor:
// rows are found by their primary key index and inserted, updated or deleted
// with index maintenance, constraints and (ENABLE ALWAYS/REPLICA) triggers,
// as PostgreSQL's own apply worker does; never by building SQL text.
//
// One remote transaction is one local transaction; the caller (the apply
// worker) commits it with the origin's commit LSN and time, so progress and
// data commit atomically.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

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
};

struct RelationMap {
    proto::Relation remote;
    bool resolved = false;  // local side looked up since the last invalidation
    Oid local_relid = InvalidOid;
    Oid key_index = InvalidOid;
    std::vector<ColumnMap> columns;  // one per remote column
};

class Applier {
public:
    Applier();
    ~Applier();
    Applier(const Applier &) = delete;
    Applier &operator=(const Applier &) = delete;

    // Applies one message. BEGIN opens the local transaction; COMMIT is
    // returned to the caller to commit (see commit()).
    void handle(const proto::Decoded &message);
    void commit(const proto::Commit &commit);
    bool in_transaction() const { return in_remote_transaction_; }
    const proto::Begin &current() const { return begin_; }

    // Relcache invalidation: forget local lookups (all when relid is 0).
    void invalidate(Oid relid);

private:
    RelationMap &relation(uint32_t remote_relid);
    void resolve(RelationMap &map);
    void lookup_local(RelationMap &map);

    std::unordered_map<uint32_t, RelationMap> relations_;
    MemoryContext message_context_;  // reset after every message
    MemoryContext cache_context_;    // FmgrInfo of the column maps
    bool in_remote_transaction_ = false;
    proto::Begin begin_;
};

}  // namespace pgmesh::apply
