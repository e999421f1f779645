// DDL capture: the ProcessUtility hook. Each utility statement a session
// runs (at top level or inside a function, DO block or procedure) is
// classified (core/ddl.hpp); replicated ones take the global lock
// (ddl_lock.hpp) and travel, sealed, in the data stream of the transaction
// that ran them (core/mesh_message.hpp), to run on every peer at that point.
// Replay on the peers is in ddl_apply.hpp.
#pragma once

namespace pgmesh::ddl_capture {

void install();

}  // namespace pgmesh::ddl_capture
