#include "catalog.hpp"

#include "guard.hpp"
#include "spi.hpp"

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
    spi::Rows rows = spi::query(
        "SELECT n.node_id, n.node_name, n.dsn, n.state, l.node_id IS NOT NULL, "
        "(pg_catalog.extract('epoch', l.copied_until) * 1000000)::pg_catalog.int8 "
        "FROM pgmesh.node n LEFT JOIN pgmesh.local_node l USING (node_id) "
        "ORDER BY n.node_id");
    for (const spi::Row &row : rows) {
        std::optional<node::State> state = node::parse_state(row.at(3).value());
        if (!state)
            throw pg::Error(ERRCODE_DATA_CORRUPTED, "pgmesh.node has unknown state \"" +
                                                        *row.at(3) + "\" for node \"" +
                                                        row.at(1).value() + "\"");
        Node node{std::stoull(row.at(0).value()), row.at(1).value(), row.at(2).value(), *state,
                  row.at(4) == "t"};
        if (node.is_local) {
            nodes.local_id = node.id;
            // Microseconds since the Unix epoch, as a TimestampTz (since 2000).
            constexpr int64_t kPostgresEpochUsecs =
                int64_t{POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE} * USECS_PER_DAY;
            nodes.copied_until = row.at(5) ? std::stoll(*row.at(5)) - kPostgresEpochUsecs : 0;
        }
        nodes.all.push_back(std::move(node));
    }
    return nodes;
}

bool extension_installed() {
    return pg::call([] { return OidIsValid(get_extension_oid("pgmesh", true)); });
}

}  // namespace pgmesh::catalog
