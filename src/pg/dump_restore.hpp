// The data copy of a join: pg_dump of the join target at the join's
// snapshot, restored into this node with pg_restore, without the pgmesh
// extension itself (the joining node has it already).
#pragma once

#include <string>

namespace pgmesh::dump_restore {

// Copies schema and data of the database behind `join_using_dsn`, as of
// `snapshot` (exported by the join's slot), into this node's database
// (`node_dsn`), in one transaction of pg_restore's. Secrets in either DSN
// reach the programs through their environment or a private file, never
// their command line. Throws pg::Error (38000) with the program's output when
// one of them fails.
void copy(const std::string &join_using_dsn, const std::string &node_dsn,
          const std::string &snapshot);

}  // namespace pgmesh::dump_restore
