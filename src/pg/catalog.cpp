#include "catalog.hpp"

#include <cstdio>

#include "guard.hpp"

namespace pgmesh::catalog {

const Node *Nodes::find(uint64_t id) const {
    for (const Node &n : all)
        if (n.id == id) return &n;
    return nullptr;
}

const Node &Nodes::require_local() const {
    if (const Node *node = local()) return *node;
    throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "this database is not a pgmesh node",
                    {}, "Run pgmesh.create_group() or pgmesh.join_group() first.");
}

Nodes read_nodes() {
    Nodes nodes;
    pg::call([&] {
        // Workers have no statement snapshot of their own.
        bool push_snapshot = !ActiveSnapshotSet();
        if (push_snapshot) PushActiveSnapshot(GetTransactionSnapshot());
        SPI_connect();
        SPI_execute(
            "SELECT n.node_id, n.node_name, n.dsn, n.state, l.node_id IS NOT NULL, "
            "l.copied_until "
            "FROM pgmesh.node n LEFT JOIN pgmesh.local_node l USING (node_id) "
            "ORDER BY n.node_id",
            false, 0);  // not read-only: a fresh snapshot, for callers that poll
        for (uint64 i = 0; i < SPI_processed; i++) {
            HeapTuple tuple = SPI_tuptable->vals[i];
            TupleDesc desc = SPI_tuptable->tupdesc;
            bool isnull = false;
            auto id = static_cast<uint64_t>(DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull)));
            bool is_local = DatumGetBool(SPI_getbinval(tuple, desc, 5, &isnull));
            const char *name = SPI_getvalue(tuple, desc, 2);
            const char *dsn = SPI_getvalue(tuple, desc, 3);
            const char *state = SPI_getvalue(tuple, desc, 4);
            nodes.all.push_back(Node{id, name, dsn, state, is_local});
            if (is_local) {
                nodes.local_id = id;
                bool no_copy = true;
                Datum copied = SPI_getbinval(tuple, desc, 6, &no_copy);
                nodes.copied_until = no_copy ? 0 : DatumGetTimestampTz(copied);
            }
        }
        SPI_finish();
        if (push_snapshot) PopActiveSnapshot();
    });
    return nodes;
}

bool extension_installed() {
    return pg::call([] { return OidIsValid(get_extension_oid("pgmesh", true)); });
}

std::string hex_id(uint64_t id) {
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
    return buf;
}

std::string slot_name(uint64_t provider, uint64_t subscriber) {
    return "pgmesh_" + hex_id(provider) + "_" + hex_id(subscriber);
}

std::string origin_name(uint64_t provider) {
    return "pgmesh_" + hex_id(provider);
}

}  // namespace pgmesh::catalog
