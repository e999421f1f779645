// The one place the pg adapter includes PostgreSQL's headers, and the compat
// layer for version differences (15 is what we build and test on; 16-18 are
// where users are going). Only files under src/pg include this.
#pragma once

extern "C" {
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "catalog/catalog.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "access/xlog_internal.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_type.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_index.h"
#include "utils/regproc.h"
#include "utils/json.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq-fe.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "common/string.h"
#include "port.h"
#include "storage/fd.h"
#include "commands/tablecmds.h"
#include "parser/parsetree.h"
#include "access/commit_ts.h"
#include "utils/varlena.h"
#include "utils/datum.h"
#include "utils/array.h"
#include "common/hashfn.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_trigger.h"
#include "rewrite/rewriteHandler.h"
#include "common/hmac.h"
#include "utils/resowner.h"
#include "replication/message.h"
#include "tcop/utility.h"
#include "catalog/partition.h"
#include "storage/lock.h"
#include "catalog/heap.h"
#include "commands/defrem.h"
#include "nodes/nodeFuncs.h"
#include "parser/analyze.h"
#include "parser/parse_coerce.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "parser/parse_type.h"
#include "tcop/cmdtag.h"
#include "catalog/dependency.h"
#include "catalog/pg_sequence.h"
}

// PostgreSQL defines these as macros; they collide with the C++ library.
#ifdef gettext
#undef gettext
#endif
#ifdef dgettext
#undef dgettext
#endif
#ifdef ngettext
#undef ngettext
#endif
#ifdef dngettext
#undef dngettext
#endif

// c.h checks variable types with a C-only builtin; C++ gets a size check.
#undef AssertVariableIsOfType
#define AssertVariableIsOfType(varname, typename) \
    static_assert(sizeof(varname) == sizeof(typename), #varname " has the wrong type")
#undef AssertVariableIsOfTypeMacro
#define AssertVariableIsOfTypeMacro(varname, typename) ((void)sizeof(varname))

#if PG_VERSION_NUM < 150000
#error "pgmesh needs PostgreSQL 15 or later"
#endif

// Calls whose names or meaning changed after 15.
namespace pgmesh::compat {

inline bool owns_relation(Oid relid, Oid role) {
#if PG_VERSION_NUM >= 160000
    return object_ownercheck(RelationRelationId, relid, role);
#else
    return pg_class_ownercheck(relid, role);
#endif
}

inline AclResult function_aclcheck(Oid function, Oid role, AclMode mode) {
#if PG_VERSION_NUM >= 160000
    return object_aclcheck(ProcedureRelationId, function, role, mode);
#else
    return pg_proc_aclcheck(function, role, mode);
#endif
}

// Whether `member` may SET ROLE to `role`. Before 16 membership was enough.
inline bool can_set_role(Oid member, Oid role) {
#if PG_VERSION_NUM >= 160000
    return member_can_set_role(member, role);
#else
    return is_member_of_role(member, role);
#endif
}

// The backend's local id of its current top-level transaction; 17 moved it
// into MyProc->vxid.
inline LocalTransactionId local_transaction_id() {
#if PG_VERSION_NUM >= 170000
    return MyProc->vxid.lxid;
#else
    return MyProc->lxid;
#endif
}

// The delayChkptFlags bit a commit holds from writing its record until
// its origin moved and pg_xact says committed. Newer servers name it
// DELAY_CHKPT_IN_COMMIT.
#ifdef DELAY_CHKPT_IN_COMMIT
inline constexpr int kDelayCheckpointInCommit = DELAY_CHKPT_IN_COMMIT;
#else
inline constexpr int kDelayCheckpointInCommit = DELAY_CHKPT_START;
#endif

// ExecInsertIndexTuples; 16 added onlySummarizing (false: every index).
inline List *insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate,
                                 bool no_dup_err, bool *spec_conflict, List *arbiter_indexes) {
#if PG_VERSION_NUM >= 160000
    return ExecInsertIndexTuples(rri, slot, estate, false, no_dup_err, spec_conflict,
                                 arbiter_indexes, false);
#else
    return ExecInsertIndexTuples(rri, slot, estate, false, no_dup_err, spec_conflict,
                                 arbiter_indexes);
#endif
}

}  // namespace pgmesh::compat
