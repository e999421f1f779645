// Named fault points, for tests that must force an order of events or a
// path the normal guards close. PostgreSQL 15 has no INJECTION_POINT; this
// is ours.
//
// pgmesh.fault_points (superuser only) lists the armed points, comma
// separated, each as name or name=action; an empty list (the default) arms
// none. A name may end in @<node name>: then only the apply worker that
// streams from that node fires it (apply_lock_message@node3). Actions:
//
//   hold       (the default) wait while another session of this database
//              holds pg_advisory_lock(hashtext('pgmesh fault <name>')): the
//              test chooses when the code goes on. Interruptible. An apply
//              worker then also waits while 'pgmesh fault <name>@<peer>' is
//              held, so that one armed point can hold one peer's stream.
//   error      raise ERROR "pgmesh fault point "<name>" fired" (XX000)
//   sleep:<ms> sleep that long (interruptible), then go on
//
// A background worker reads the setting as any session does: from
// ALTER DATABASE ... SET when it starts, or from postgresql.conf and
// ALTER SYSTEM at a reload. Every point is listed in kPoints (fault.cpp) and
// in docs/architecture.md; arming an unknown name is refused.
//
// Switches, which change a path instead of pausing at it (armed() only):
//   skip_keyless_check   the ExecutorStart hook lets UPDATE and DELETE on
//                        tables without a usable key through
//
// Points (fault::point()):
//   apply_connect        apply worker: about to connect to the peer (held,
//                        the worker neither streams nor holds write gates)
//   apply_begin          apply worker: a remote transaction begun, nothing of
//                        it applied yet (apply_begin@node1 holds node1's
//                        stream on this node: tests choose arrival orders)
//   apply_before_commit  apply worker: a remote transaction applied, its
//                        local commit not yet done
//   apply_feedback       apply worker: before it sends feedback to the peer
//   join_<step>          join_group: before each of its steps (join.cpp)
//   apply_lock_message   apply worker: a global lock message received, not
//                        yet acted on (two requests out at once)
//   forward_commit       forwarding worker (pgmesh.forward_missing): a
//                        forwarded transaction committed here, the next
//                        not yet begun (@<dead node> as for apply points)
//   manager_round        manager: before each round (held, it starts and
//                        stops no worker, moves no relay slot, serves no
//                        global lock and commits nothing)
#pragma once

#include "postgres_headers.hpp"

namespace pgmesh::fault {

// pgmesh.fault_points (module.cpp defines the setting).
extern char *points;

// GUC check hook of pgmesh.fault_points: every entry names a known point
// or switch with a valid action.
bool check_points(char **newval, void **extra, GucSource source);

// Apply worker: the peer it streams from, for points armed as name@peer.
void set_worker_peer(const char *peer_name);

// Whether the point or switch is armed in this session (any action).
bool armed(const char *name);

// Does what the point is armed to do, if it is armed. Call inside pg::call.
void point(const char *name);

}  // namespace pgmesh::fault
