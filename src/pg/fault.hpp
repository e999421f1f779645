// Named fault points, for tests that must force an order of events or a
// path the normal guards close (a change the output plugin cannot send).
//
// pgmesh.fault_points (superuser only) lists the armed points, comma
// separated; an empty list (the default) arms none. The points:
//
//   skip_keyless_check  the ExecutorStart hook lets UPDATE and DELETE on
//                       tables without a usable key through
//   join_before_dump    join_group holds after creating its slots, before
//                       pg_dump starts (see hold_if_armed)
#pragma once

namespace pgmesh::fault {

// pgmesh.fault_points (module.cpp defines the setting).
extern char *points;

// Whether the point is armed in this session.
bool armed(const char *point);

// If the point is armed, waits while another session of this database holds
// the advisory lock pg_advisory_lock(hashtext('pgmesh fault <point>')): the
// test chooses when the code goes on. Interruptible. Call inside pg::call.
void hold_if_armed(const char *point);

}  // namespace pgmesh::fault
