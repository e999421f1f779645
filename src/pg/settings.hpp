// pgmesh's GUCs (defined in module.cpp). Process globals, as PostgreSQL's
// configuration model has them.
#pragma once

namespace pgmesh::settings {

// pgmesh.conflict_history: record conflicts in pgmesh.conflict_history.
extern bool conflict_history;

}  // namespace pgmesh::settings
