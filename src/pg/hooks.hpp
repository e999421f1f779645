// Hooks pgmesh installs in every backend (hooks.cpp).
#pragma once

namespace pgmesh::hooks {

// Installs the hooks, chaining to those installed before. Called once, from
// _PG_init.
void install();

}  // namespace pgmesh::hooks
