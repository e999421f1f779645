// Reads a utility statement's parse tree into a ddl::Command (see
// ddl_describe.hpp). Everything is read before the statement runs, so the
// objects it names are looked up the way it will look them up, but without
// a lock: the statement takes its own when it runs, and reports a missing
// object itself. The facts are gathered inside pg::call into plain data and
// PostgreSQL Lists (guard.hpp), and copied into C++ containers after.
#include "ddl_describe.hpp"

#include <cstring>

#include "guard.hpp"

namespace pgmesh::ddl_describe {

namespace {

using ddl::Persistence;

// What describe() gathers inside pg::call: plain data only.
struct Description {
    ddl::Command command;
    // Of OIDs, palloc'd: the write lock's tables (Statement::tables).
    List *tables = NIL;
    bool all_tables = false;
    // The persistence of every object the statement names, settled into
    // command.persistence and command.mixed_persistence at the end.
    bool seen_permanent = false;
    bool seen_temporary = false;
    bool seen_unlogged = false;
    // The relation an ALTER TABLE changes, for the expression checks that
    // run after the description (check_expressions()).
    Oid altered = InvalidOid;
    char altered_relkind = '\0';
    // Views already expanded (tables_read()): their stored query names
    // themselves.
    List *expanded_views = NIL;
    // CREATE VIEW: the persistence its name and TEMP give it, noted once
    // the query is read too.
    char view_persistence = RELPERSISTENCE_PERMANENT;
};

// ---------------------------------------------------------------------------
// Objects and their persistence

void note_persistence(Description *d, char relpersistence) {
    switch (relpersistence) {
        case RELPERSISTENCE_TEMP:
            d->seen_temporary = true;
            break;
        case RELPERSISTENCE_UNLOGGED:
            d->seen_unlogged = true;
            break;
        default:
            d->seen_permanent = true;
            break;
    }
}

// Temporary and unlogged objects exist on this node only (classify() runs
// statements about them here only), so naming either together with
// permanent objects is mixed: the other nodes have only some of them.
void settle_persistence(Description *d) {
    ddl::Command &c = d->command;
    c.mixed_persistence = d->seen_permanent && (d->seen_temporary || d->seen_unlogged);
    if (d->seen_temporary)
        c.persistence = Persistence::kTemporary;
    else if (d->seen_unlogged)
        c.persistence = Persistence::kUnlogged;
    else
        c.persistence = Persistence::kPermanent;
}

bool is_pgmesh_schema(const char *schema) {
    return schema && strcmp(schema, "pgmesh") == 0;
}

// pg_temp (this session's temporary schema, whether it exists yet or not)
// or another pg_temp_N.
bool is_temp_schema(const char *schema) {
    if (strcmp(schema, "pg_temp") == 0) return true;
    Oid nsp = get_namespace_oid(schema, true);
    return OidIsValid(nsp) && isAnyTempNamespace(nsp);
}

// An object that is not a relation (a function, type, operator, ...),
// named with an optional schema: one in pg_temp is this session's own, one
// in pgmesh is pgmesh's. An unqualified name counts as permanent.
void note_schema(Description *d, const char *schema) {
    if (is_pgmesh_schema(schema)) d->command.targets_pgmesh = true;
    note_persistence(
        d, schema && is_temp_schema(schema) ? RELPERSISTENCE_TEMP : RELPERSISTENCE_PERMANENT);
}

// The schema in a qualified name (a List of String: "s.f" or "db.s.f"),
// or nullptr.
const char *schema_of(List *names) {
    int n = list_length(names);
    if (n < 2 || n > 3) return nullptr;
    Node *schema = static_cast<Node *>(list_nth(names, n - 2));
    return IsA(schema, String) ? strVal(schema) : nullptr;
}

// What pg_class says about a relation. It was looked up without a lock and
// may be gone since: relkind is '\0' then.
struct RelInfo {
    char relkind = '\0';
    char persistence = RELPERSISTENCE_PERMANENT;
    Oid nsp = InvalidOid;
};

RelInfo rel_info(Oid relid) {
    RelInfo info;
    if (!OidIsValid(relid)) return info;
    HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
    if (!HeapTupleIsValid(tuple)) return info;
    auto *form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
    info.relkind = form->relkind;
    info.persistence = form->relpersistence;
    info.nsp = form->relnamespace;
    ReleaseSysCache(tuple);
    return info;
}

// An existing relation the statement names, as the statement will find
// it; InvalidOid when there is none (the statement reports that itself).
Oid existing(const RangeVar *rv) {
    return rv ? RangeVarGetRelid(rv, NoLock, true) : InvalidOid;
}

// Notes a relation the statement changes or drops: its persistence, and
// whether it is pgmesh's own. Returns what pg_class says about it.
RelInfo note_relation(Description *d, const RangeVar *rv, Oid relid) {
    if (rv && is_pgmesh_schema(rv->schemaname)) d->command.targets_pgmesh = true;
    RelInfo info = rel_info(relid);
    if (info.relkind == '\0') return info;
    note_persistence(d, info.persistence);
    Oid pgmesh = get_namespace_oid("pgmesh", true);
    if (OidIsValid(pgmesh) && info.nsp == pgmesh) d->command.targets_pgmesh = true;
    return info;
}

RelInfo note_relation(Description *d, const RangeVar *rv) {
    return note_relation(d, rv, existing(rv));
}

// The persistence of a relation the statement creates: TEMP and UNLOGGED
// say so, and so does the schema it goes into (pg_temp, or a search_path
// that starts with it). Notes whether it goes into schema pgmesh.
char new_relation_persistence(Description *d, const RangeVar *rv) {
    char persistence = rv->relpersistence;
    Oid nsp = InvalidOid;
    if (rv->schemaname) {
        if (is_pgmesh_schema(rv->schemaname)) d->command.targets_pgmesh = true;
        if (is_temp_schema(rv->schemaname)) persistence = RELPERSISTENCE_TEMP;
        nsp = get_namespace_oid(rv->schemaname, true);
    } else if (persistence != RELPERSISTENCE_TEMP) {
        // Where the statement will create it. Errors only where the
        // statement would (no schema in search_path).
        nsp = RangeVarGetCreationNamespace(rv);
        if (isAnyTempNamespace(nsp)) persistence = RELPERSISTENCE_TEMP;
    }
    Oid pgmesh = get_namespace_oid("pgmesh", true);
    if (OidIsValid(pgmesh) && nsp == pgmesh) d->command.targets_pgmesh = true;
    return persistence;
}

void note_new_relation(Description *d, const RangeVar *rv) {
    note_persistence(d, new_relation_persistence(d, rv));
}

bool is_relation_kind(ObjectType type) {
    switch (type) {
        case OBJECT_TABLE:
        case OBJECT_SEQUENCE:
        case OBJECT_VIEW:
        case OBJECT_MATVIEW:
        case OBJECT_INDEX:
        case OBJECT_FOREIGN_TABLE:
            return true;
        default:
            return false;
    }
}

// Objects that belong to a relation, named by the relation's name with
// their own appended (COMMENT ON COLUMN t.c, DROP TRIGGER g ON t, ...).
bool is_relation_member_kind(ObjectType type) {
    switch (type) {
        case OBJECT_COLUMN:
        case OBJECT_TABCONSTRAINT:
        case OBJECT_TRIGGER:
        case OBJECT_RULE:
        case OBJECT_POLICY:
            return true;
        default:
            return false;
    }
}

// Objects that live in a schema and are named by a plain qualified name.
bool is_schema_object_kind(ObjectType type) {
    switch (type) {
        case OBJECT_AGGREGATE:
        case OBJECT_COLLATION:
        case OBJECT_CONVERSION:
        case OBJECT_DOMAIN:
        case OBJECT_FUNCTION:
        case OBJECT_OPERATOR:
        case OBJECT_PROCEDURE:
        case OBJECT_ROUTINE:
        case OBJECT_STATISTIC_EXT:
        case OBJECT_TSCONFIGURATION:
        case OBJECT_TSDICTIONARY:
        case OBJECT_TSPARSER:
        case OBJECT_TSTEMPLATE:
        case OBJECT_TYPE:
            return true;
        default:
            return false;
    }
}

// The name list of an object as DROP, COMMENT, ALTER ... RENAME/OWNER/SET
// SCHEMA spell it: a List of String, or a function's or type's name.
List *names_of(Node *object) {
    if (!object) return NIL;
    if (IsA(object, List)) return reinterpret_cast<List *>(object);
    if (IsA(object, ObjectWithArgs)) return reinterpret_cast<ObjectWithArgs *>(object)->objname;
    if (IsA(object, TypeName)) return reinterpret_cast<TypeName *>(object)->names;
    return NIL;
}

// An extension or schema: a plain name.
bool names_pgmesh(Node *object) {
    return object && IsA(object, String) && strcmp(strVal(object), "pgmesh") == 0;
}

// Notes one object of a DROP, COMMENT, SECURITY LABEL, ALTER ... OWNER or
// SET SCHEMA. Returns the relation it is or belongs to, if any.
Oid note_object(Description *d, ObjectType type, Node *object) {
    if (is_relation_kind(type) || is_relation_member_kind(type)) {
        List *names = names_of(object);
        if (is_relation_member_kind(type))
            names = list_truncate(list_copy(names), list_length(names) - 1);
        if (names == NIL) return InvalidOid;
        RangeVar *rv = makeRangeVarFromNameList(names);
        Oid relid = existing(rv);
        note_relation(d, rv, relid);
        return relid;
    }
    if (type == OBJECT_EXTENSION || type == OBJECT_SCHEMA) {
        if (names_pgmesh(object)) d->command.targets_pgmesh = true;
        return InvalidOid;
    }
    if (is_schema_object_kind(type)) note_schema(d, schema_of(names_of(object)));
    return InvalidOid;
}

// ---------------------------------------------------------------------------
// The write lock's tables

// A table with the tables its rows are also read and written through: its
// partitions and inheritance children, and the partitioned tables above it.
void add_table_tree(Description *d, Oid relid) {
    if (!OidIsValid(relid)) return;
    d->tables = list_concat_unique_oid(d->tables, find_all_inheritors(relid, NoLock, nullptr));
    d->tables = list_concat_unique_oid(d->tables, get_partition_ancestors(relid));
}

bool holds_rows(char relkind) {
    return relkind == RELKIND_RELATION || relkind == RELKIND_PARTITIONED_TABLE;
}

// What rows look like: tables, and composite types (the rows of typed
// tables, and columns of the type).
bool has_row_shape(char relkind) {
    return holds_rows(relkind) || relkind == RELKIND_FOREIGN_TABLE ||
           relkind == RELKIND_COMPOSITE_TYPE;
}

// PostgreSQL 15 declares tree walkers as `bool (*)()`, a C function of
// unspecified arguments (which C++ reads as none); 16 has a typedef.
#if PG_VERSION_NUM < 160000
using TreeWalker = bool (*)();
TreeWalker as_walker(bool (*walker)(Node *, void *)) {
    return reinterpret_cast<TreeWalker>(reinterpret_cast<void (*)()>(walker));
}
#else
tree_walker_callback as_walker(bool (*walker)(Node *, void *)) {
    return walker;
}
#endif

// The tables an analyzed query reads, through the views it names: a
// materialized view is computed from their rows. Views are opened (the
// rewriter opens them the same way when the statement runs) to read their
// query; materialized views and foreign tables hold this node's own rows.
bool tables_read(Node *node, void *context) {
    auto *d = static_cast<Description *>(context);
    if (!node) return false;
    if (!IsA(node, Query)) return expression_tree_walker(node, as_walker(tables_read), context);
    auto *query = reinterpret_cast<Query *>(node);
    ListCell *lc;
    foreach (lc, query->rtable) {
        auto *rte = lfirst_node(RangeTblEntry, lc);
        if (rte->rtekind != RTE_RELATION) continue;
        if (holds_rows(rte->relkind)) add_table_tree(d, rte->relid);
        if (rte->relkind != RELKIND_VIEW || list_member_oid(d->expanded_views, rte->relid))
            continue;
        d->expanded_views = lappend_oid(d->expanded_views, rte->relid);
        Relation view = relation_open(rte->relid, AccessShareLock);
        Query *view_query = get_view_query(view);
        relation_close(view, NoLock);
        tables_read(reinterpret_cast<Node *>(view_query), context);
    }
    return query_tree_walker(query, as_walker(tables_read), context, 0);
}

// ---------------------------------------------------------------------------
// Statements

bool is_exclusion(Node *node) {
    return node && IsA(node, Constraint) &&
           reinterpret_cast<Constraint *>(node)->contype == CONSTR_EXCLUSION;
}

// EXCLUDE among a new table's constraints (the grammar has it as a table
// constraint only; its columns' constraints are searched too).
bool has_exclusion(const CreateStmt *stmt) {
    ListCell *lc;
    foreach (lc, stmt->tableElts) {
        Node *elt = static_cast<Node *>(lfirst(lc));
        if (is_exclusion(elt)) return true;
        if (!IsA(elt, ColumnDef)) continue;
        ListCell *cc;
        foreach (cc, reinterpret_cast<ColumnDef *>(elt)->constraints)
            if (is_exclusion(static_cast<Node *>(lfirst(cc)))) return true;
    }
    foreach (lc, stmt->constraints)
        if (is_exclusion(static_cast<Node *>(lfirst(lc)))) return true;
    return false;
}

void create_table(Description *d, const CreateStmt *stmt) {
    note_new_relation(d, stmt->relation);
    d->command.exclusion_constraint = has_exclusion(stmt);
    // A new partition of a table with a default partition: the default
    // partition's rows are checked against the new bounds. Writes through
    // the parent may go to it, so the whole tree is blocked.
    if (stmt->partbound && !stmt->partbound->is_default && list_length(stmt->inhRelations) == 1) {
        Oid parent = existing(linitial_node(RangeVar, stmt->inhRelations));
        if (OidIsValid(parent) && get_rel_relkind(parent) == RELKIND_PARTITIONED_TABLE &&
            OidIsValid(get_default_partition_oid(parent))) {
            d->command.checks_existing_rows = true;
            add_table_tree(d, parent);
        }
    }
}

// CREATE TABLE AS and SELECT INTO are refused unless temporary; a
// materialized view takes the write lock on the tables its query reads
// (the statement's parse analysis holds them locked already).
void create_table_as(Description *d, const CreateTableAsStmt *stmt) {
    note_new_relation(d, stmt->into->rel);
    if (stmt->objtype == OBJECT_MATVIEW && !stmt->into->skipData && stmt->query &&
        IsA(stmt->query, Query))
        tables_read(stmt->query, d);
}

// A view on a temporary relation is temporary too; whether its query uses
// one is read after the description (view_is_temporary()).
void create_view(Description *d, const ViewStmt *stmt) {
    d->view_persistence = new_relation_persistence(d, stmt->view);
}

// CREATE SCHEMA's elements run as subcommands the hook does not see: the
// one fact among them that refuses the statement is read here.
void create_schema(Description *d, const CreateSchemaStmt *stmt) {
    if (is_pgmesh_schema(stmt->schemaname)) d->command.targets_pgmesh = true;
    ListCell *lc;
    foreach (lc, stmt->schemaElts) {
        Node *elt = static_cast<Node *>(lfirst(lc));
        if (IsA(elt, CreateStmt) && has_exclusion(reinterpret_cast<CreateStmt *>(elt)))
            d->command.exclusion_constraint = true;
    }
}

// A unique index takes the write lock on the indexed table.
void create_index(Description *d, const IndexStmt *stmt) {
    Oid relid = existing(stmt->relation);
    RelInfo info = note_relation(d, stmt->relation, relid);
    d->command.concurrently = stmt->concurrent;
    d->command.unique_index = stmt->unique;
    if (holds_rows(info.relkind)) add_table_tree(d, relid);
}

// Subcommands that change neither what rows look like nor which rows are
// valid (ddl::Command::changes_table_shape).
bool is_metadata_only(AlterTableType subtype) {
    switch (subtype) {
        case AT_ChangeOwner:
        case AT_SetRelOptions:
        case AT_ResetRelOptions:
        case AT_ReplaceRelOptions:
        case AT_SetStatistics:
        case AT_SetStorage:
        case AT_SetCompression:
        case AT_SetOptions:
        case AT_ResetOptions:
        case AT_ClusterOn:
        case AT_DropCluster:
        case AT_EnableTrig:
        case AT_EnableAlwaysTrig:
        case AT_EnableReplicaTrig:
        case AT_DisableTrig:
        case AT_EnableTrigAll:
        case AT_DisableTrigAll:
        case AT_EnableTrigUser:
        case AT_DisableTrigUser:
        case AT_EnableRule:
        case AT_EnableAlwaysRule:
        case AT_EnableReplicaRule:
        case AT_DisableRule:
        case AT_EnableRowSecurity:
        case AT_DisableRowSecurity:
        case AT_ForceRowSecurity:
        case AT_NoForceRowSecurity:
        case AT_ReplicaIdentity:
        case AT_SetTableSpace:
        case AT_SetAccessMethod:
        case AT_GenericOptions:
        case AT_AlterColumnGenericOptions:
        case AT_ValidateConstraint:
            return true;
        default:
            return false;
    }
}

// A foreign key checks the referenced table's rows too: writes to it on
// other nodes must wait as well.
void add_referenced_table(Description *d, Node *node) {
    if (!node || !IsA(node, Constraint)) return;
    auto *constraint = reinterpret_cast<Constraint *>(node);
    if (constraint->contype == CONSTR_FOREIGN) add_table_tree(d, existing(constraint->pktable));
}

// What one ALTER TABLE subcommand adds to the description; `tables`: the
// relation holds rows a write lock protects.
void alter_table_cmd(Description *d, const AlterTableCmd *cmd, bool tables) {
    ddl::Command &c = d->command;
    switch (cmd->subtype) {
        case AT_SetLogged:
        case AT_SetUnLogged:
            c.changes_logged = true;
            break;
        case AT_DetachPartition:
            if (castNode(PartitionCmd, cmd->def)->concurrent) c.concurrently = true;
            break;
        case AT_AttachPartition:
            // ALTER INDEX ... ATTACH PARTITION names an index.
            if (tables) add_table_tree(d, existing(castNode(PartitionCmd, cmd->def)->name));
            break;
        case AT_AddInherit:
        case AT_DropInherit:
            if (tables) add_table_tree(d, existing(castNode(RangeVar, cmd->def)));
            break;
        case AT_AddConstraint:
            if (is_exclusion(cmd->def)) c.exclusion_constraint = true;
            if (tables) add_referenced_table(d, cmd->def);
            break;
        case AT_AddColumn: {
            if (!tables || !cmd->def || !IsA(cmd->def, ColumnDef)) break;
            ListCell *lc;
            foreach (lc, reinterpret_cast<ColumnDef *>(cmd->def)->constraints)
                add_referenced_table(d, static_cast<Node *>(lfirst(lc)));
            break;
        }
        default:
            break;
    }
}

// ALTER TABLE, and ALTER INDEX/SEQUENCE/VIEW/MATERIALIZED VIEW/FOREIGN
// TABLE/TYPE, which PostgreSQL parses the same way.
void alter_table(Description *d, const AlterTableStmt *stmt) {
    Oid relid = existing(stmt->relation);
    RelInfo info = note_relation(d, stmt->relation, relid);
    // A relation that is gone: what the statement says it is.
    bool shaped = info.relkind != '\0'
                      ? has_row_shape(info.relkind)
                      : stmt->objtype == OBJECT_TABLE || stmt->objtype == OBJECT_FOREIGN_TABLE ||
                            stmt->objtype == OBJECT_TYPE;
    bool tables = shaped && info.relkind != RELKIND_COMPOSITE_TYPE && stmt->objtype != OBJECT_TYPE;
    d->altered = relid;
    d->altered_relkind = info.relkind;
    // Typed tables and columns of the type are found through dependencies,
    // not by name.
    if (stmt->objtype == OBJECT_TYPE || info.relkind == RELKIND_COMPOSITE_TYPE)
        d->all_tables = true;

    bool only_tablespace = stmt->cmds != NIL;
    bool shape = false;
    ListCell *lc;
    foreach (lc, stmt->cmds) {
        auto *cmd = lfirst_node(AlterTableCmd, lc);
        if (cmd->subtype != AT_SetTableSpace) only_tablespace = false;
        if (!is_metadata_only(cmd->subtype)) shape = true;
        alter_table_cmd(d, cmd, tables);
    }
    d->command.only_tablespace = only_tablespace;
    d->command.changes_table_shape = shaped && shape;
    if (tables) add_table_tree(d, relid);
}

// RENAME of a table, column, constraint or composite type attribute
// changes what rows look like by name: rows sent under the old name must
// not arrive after it.
void rename_object(Description *d, const RenameStmt *stmt) {
    ObjectType type = stmt->renameType;
    if (type == OBJECT_SCHEMA) {
        if (is_pgmesh_schema(stmt->subname)) d->command.targets_pgmesh = true;
        return;
    }
    if (!stmt->relation) {
        note_object(d, type, stmt->object);
        return;
    }
    Oid relid = existing(stmt->relation);
    RelInfo info = note_relation(d, stmt->relation, relid);
    bool renames_shape = type == OBJECT_TABLE || type == OBJECT_FOREIGN_TABLE ||
                         type == OBJECT_COLUMN || type == OBJECT_TABCONSTRAINT ||
                         type == OBJECT_ATTRIBUTE;
    bool shaped = info.relkind != '\0' ? has_row_shape(info.relkind) : true;
    d->command.changes_table_shape = renames_shape && shaped;
    if (type == OBJECT_ATTRIBUTE || info.relkind == RELKIND_COMPOSITE_TYPE)
        d->all_tables = true;
    else if (d->command.changes_table_shape)
        add_table_tree(d, relid);
}

// SET SCHEMA of a table moves it by name, as RENAME does. Moving an object
// into schema pgmesh is not about pgmesh's own objects: it replicates, so
// every node moves it.
void alter_schema(Description *d, const AlterObjectSchemaStmt *stmt) {
    if (!stmt->relation) {
        note_object(d, stmt->objectType, stmt->object);
        return;
    }
    Oid relid = existing(stmt->relation);
    RelInfo info = note_relation(d, stmt->relation, relid);
    if ((stmt->objectType == OBJECT_TABLE || stmt->objectType == OBJECT_FOREIGN_TABLE) &&
        (info.relkind == '\0' || has_row_shape(info.relkind))) {
        d->command.changes_table_shape = true;
        add_table_tree(d, relid);
    }
}

void alter_owner(Description *d, const AlterOwnerStmt *stmt) {
    if (stmt->relation)
        note_relation(d, stmt->relation);
    else
        note_object(d, stmt->objectType, stmt->object);
}

// Objects pgmesh never replicates: GRANT, COMMENT and SECURITY LABEL on
// them run here only.
bool is_cluster_wide(ObjectType type) {
    switch (type) {
        case OBJECT_DATABASE:
        case OBJECT_TABLESPACE:
        case OBJECT_ROLE:
        case OBJECT_SUBSCRIPTION:
        case OBJECT_PUBLICATION:
        case OBJECT_PARAMETER_ACL:
            return true;
        default:
            return false;
    }
}

void comment_or_label(Description *d, ObjectType type, Node *object) {
    if (is_cluster_wide(type))
        d->command.cluster_wide = true;
    else
        note_object(d, type, object);
}

void grant(Description *d, const GrantStmt *stmt) {
    if (is_cluster_wide(stmt->objtype)) {
        d->command.cluster_wide = true;
        return;
    }
    ListCell *lc;
    if (stmt->targtype == ACL_TARGET_ALL_IN_SCHEMA) {
        foreach (lc, stmt->objects)
            if (names_pgmesh(static_cast<Node *>(lfirst(lc)))) d->command.targets_pgmesh = true;
        return;
    }
    if (stmt->targtype != ACL_TARGET_OBJECT) return;
    foreach (lc, stmt->objects) {
        Node *object = static_cast<Node *>(lfirst(lc));
        if (IsA(object, RangeVar))
            note_relation(d, reinterpret_cast<RangeVar *>(object));
        else
            note_object(d, stmt->objtype, object);
    }
}

// Every named object that exists counts towards the persistence; one
// missing (IF EXISTS) does not.
void drop(Description *d, const DropStmt *stmt) {
    ddl::Command &c = d->command;
    c.concurrently = stmt->concurrent;
    c.cascade = stmt->behavior == DROP_CASCADE;
    ObjectType type = stmt->removeType;
    if (c.cascade || type == OBJECT_SCHEMA || type == OBJECT_TYPE || type == OBJECT_DOMAIN)
        d->all_tables = true;
    bool tables = type == OBJECT_TABLE || type == OBJECT_FOREIGN_TABLE;
    ListCell *lc;
    foreach (lc, stmt->objects) {
        Oid relid = note_object(d, type, static_cast<Node *>(lfirst(lc)));
        if (tables) add_table_tree(d, relid);
    }
}

void reindex(Description *d, const ReindexStmt *stmt) {
    if (stmt->relation) note_relation(d, stmt->relation);
    ListCell *lc;
    foreach (lc, stmt->params) {
        auto *param = lfirst_node(DefElem, lc);
        if (strcmp(param->defname, "concurrently") == 0)
            d->command.concurrently = defGetBoolean(param);
    }
}

// The name of a function, type, operator, ... a CREATE or ALTER names:
// where it lives decides whether it is temporary or pgmesh's. NIL for
// other statements.
List *schema_object_name(Node *parse) {
    switch (nodeTag(parse)) {
        case T_CreateFunctionStmt:
            return castNode(CreateFunctionStmt, parse)->funcname;
        case T_AlterFunctionStmt:
            return castNode(AlterFunctionStmt, parse)->func->objname;
        case T_DefineStmt:
            return castNode(DefineStmt, parse)->defnames;
        case T_CreateEnumStmt:
            return castNode(CreateEnumStmt, parse)->typeName;
        case T_CreateRangeStmt:
            return castNode(CreateRangeStmt, parse)->typeName;
        case T_CreateDomainStmt:
            return castNode(CreateDomainStmt, parse)->domainname;
        case T_AlterDomainStmt:
            return castNode(AlterDomainStmt, parse)->typeName;
        case T_AlterEnumStmt:
            return castNode(AlterEnumStmt, parse)->typeName;
        case T_AlterTypeStmt:
            return castNode(AlterTypeStmt, parse)->typeName;
        case T_CreateConversionStmt:
            return castNode(CreateConversionStmt, parse)->conversion_name;
        case T_AlterCollationStmt:
            return castNode(AlterCollationStmt, parse)->collname;
        case T_AlterOperatorStmt:
            return castNode(AlterOperatorStmt, parse)->opername->objname;
        case T_AlterTSDictionaryStmt:
            return castNode(AlterTSDictionaryStmt, parse)->dictname;
        case T_AlterTSConfigurationStmt:
            return castNode(AlterTSConfigurationStmt, parse)->cfgname;
        case T_AlterStatsStmt:
            return castNode(AlterStatsStmt, parse)->defnames;
        default:
            return NIL;
    }
}

void describe_node(Description *d, Node *parse) {
    ddl::Command &c = d->command;
    switch (nodeTag(parse)) {
        case T_CreateStmt:
            create_table(d, castNode(CreateStmt, parse));
            break;
        case T_CreateForeignTableStmt:
            create_table(d, &castNode(CreateForeignTableStmt, parse)->base);
            break;
        case T_CreateSeqStmt:
            note_new_relation(d, castNode(CreateSeqStmt, parse)->sequence);
            break;
        case T_ViewStmt:
            create_view(d, castNode(ViewStmt, parse));
            break;
        case T_CreateTableAsStmt:
            create_table_as(d, castNode(CreateTableAsStmt, parse));
            break;
        case T_CompositeTypeStmt:
            note_schema(d, castNode(CompositeTypeStmt, parse)->typevar->schemaname);
            break;
        case T_CreateSchemaStmt:
            create_schema(d, castNode(CreateSchemaStmt, parse));
            break;
        case T_IndexStmt:
            create_index(d, castNode(IndexStmt, parse));
            break;
        case T_AlterTableStmt:
            alter_table(d, castNode(AlterTableStmt, parse));
            break;
        case T_AlterTableMoveAllStmt:
            c.only_tablespace = true;
            break;
        case T_RenameStmt:
            rename_object(d, castNode(RenameStmt, parse));
            break;
        case T_AlterObjectSchemaStmt:
            alter_schema(d, castNode(AlterObjectSchemaStmt, parse));
            break;
        case T_AlterOwnerStmt:
            alter_owner(d, castNode(AlterOwnerStmt, parse));
            break;
        case T_CommentStmt:
            comment_or_label(d, castNode(CommentStmt, parse)->objtype,
                             castNode(CommentStmt, parse)->object);
            break;
        case T_SecLabelStmt:
            comment_or_label(d, castNode(SecLabelStmt, parse)->objtype,
                             castNode(SecLabelStmt, parse)->object);
            break;
        case T_GrantStmt:
            grant(d, castNode(GrantStmt, parse));
            break;
        case T_DropStmt:
            drop(d, castNode(DropStmt, parse));
            break;
        case T_DropOwnedStmt:
            c.cascade = true;
            d->all_tables = true;
            break;
        case T_ReindexStmt:
            reindex(d, castNode(ReindexStmt, parse));
            break;
        case T_RefreshMatViewStmt:
            c.concurrently = castNode(RefreshMatViewStmt, parse)->concurrent;
            note_relation(d, castNode(RefreshMatViewStmt, parse)->relation);
            break;
        // Statements about one existing relation: its persistence decides.
        case T_CreateTrigStmt:
            note_relation(d, castNode(CreateTrigStmt, parse)->relation);
            break;
        case T_RuleStmt:
            note_relation(d, castNode(RuleStmt, parse)->relation);
            break;
        case T_CreatePolicyStmt:
            note_relation(d, castNode(CreatePolicyStmt, parse)->table);
            break;
        case T_AlterPolicyStmt:
            note_relation(d, castNode(AlterPolicyStmt, parse)->table);
            break;
        case T_AlterSeqStmt:
            note_relation(d, castNode(AlterSeqStmt, parse)->sequence);
            break;
        case T_AlterObjectDependsStmt:
            if (castNode(AlterObjectDependsStmt, parse)->relation)
                note_relation(d, castNode(AlterObjectDependsStmt, parse)->relation);
            break;
        case T_CreateStatsStmt: {
            ListCell *lc;
            foreach (lc, castNode(CreateStatsStmt, parse)->relations) {
                Node *rel = static_cast<Node *>(lfirst(lc));
                if (IsA(rel, RangeVar)) note_relation(d, reinterpret_cast<RangeVar *>(rel));
            }
            break;
        }
        case T_CreateExtensionStmt:
            c.targets_pgmesh = strcmp(castNode(CreateExtensionStmt, parse)->extname, "pgmesh") == 0;
            break;
        case T_AlterExtensionStmt:
            c.targets_pgmesh = strcmp(castNode(AlterExtensionStmt, parse)->extname, "pgmesh") == 0;
            break;
        case T_AlterExtensionContentsStmt:
            c.targets_pgmesh =
                strcmp(castNode(AlterExtensionContentsStmt, parse)->extname, "pgmesh") == 0;
            break;
        default:
            if (List *name = schema_object_name(parse); name != NIL)
                note_schema(d, schema_of(name));
            break;
    }
    // A domain's constraints and NOT NULL are checked against every column
    // of the type, in any table.
    if (IsA(parse, AlterDomainStmt)) {
        d->all_tables = true;
        const auto *alter = castNode(AlterDomainStmt, parse);
        switch (alter->subtype) {
            case 'C':  // ADD CONSTRAINT, checked unless NOT VALID
                c.checks_existing_rows = !(alter->def && IsA(alter->def, Constraint) &&
                                           castNode(Constraint, alter->def)->skip_validation);
                break;
            case 'O':  // SET NOT NULL
            case 'V':  // VALIDATE CONSTRAINT
                c.checks_existing_rows = true;
                break;
            default:
                break;
        }
    }
}

// ---------------------------------------------------------------------------
// Checks that can fail
//
// Some facts are read by doing what the statement will do: building an
// expression, analyzing a query. That fails where the statement fails (an
// unknown type, function or column), and then the statement, not
// describe(), should report it, with PostgreSQL's own error.

// A cancel, a shutdown or running out of memory is not the statement's
// own error to report later: it is passed on.
bool passes_on(const pg::Error &e) {
    int category = ERRCODE_TO_CATEGORY(e.sqlerrcode());
    return category == ERRCODE_OPERATOR_INTERVENTION || category == ERRCODE_INSUFFICIENT_RESOURCES;
}

// Runs a check (a pg::call body) in a subtransaction that is always rolled
// back: the locks it takes and anything it leaves go with it. An error in
// it means the check cannot tell, false; the statement reports it when it
// runs. The subtransaction is ended on every path: one left open would be
// the one a PL/pgSQL exception block around the statement rolls back.
template <typename Check>
bool unless_error(Check &&check) {
    MemoryContext context = nullptr;
    ResourceOwner owner = nullptr;
    pg::call([&] {
        context = CurrentMemoryContext;
        owner = CurrentResourceOwner;
        BeginInternalSubTransaction(nullptr);
        MemoryContextSwitchTo(context);
    });
    auto end = [&] {
        pg::call([&] {
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(context);
            CurrentResourceOwner = owner;
        });
    };
    bool result = false;
    try {
        result = pg::call(check);
    } catch (const pg::Error &e) {
        end();
        if (passes_on(e)) throw;
        return false;
    } catch (...) {
        end();
        throw;
    }
    end();
    return result;
}

// ---------------------------------------------------------------------------
// Expressions computed for every existing row
//
// ADD COLUMN with a default and ALTER COLUMN TYPE compute a value for each
// row a table holds; each node computes its own. Whether that value can
// differ between nodes is read off the expression the way PostgreSQL
// builds it, under unless_error().

// transformColumnDefinition's test: an unqualified serial type name makes
// a sequence and a nextval() default.
bool is_serial(const TypeName *type) {
    if (!type || list_length(type->names) != 1 || type->pct_type) return false;
    const char *name = strVal(linitial(type->names));
    static constexpr const char *kSerial[] = {"smallserial", "serial2",   "serial",
                                              "serial4",     "bigserial", "serial8"};
    for (const char *serial : kSerial)
        if (strcmp(name, serial) == 0) return true;
    return false;
}

// ALTER TABLE ... ADD COLUMN: the default PostgreSQL fills the existing
// rows with (build_column_default: the column's own, an identity's
// nextval(), or its type's, a domain's DEFAULT). A stable default (now())
// is computed once per node, a volatile one once per row: both differ
// between nodes. A generated column's expression must be immutable.
bool default_is_mutable(Oid relid, const AlterTableCmd *cmd, const char *query) {
    auto *column = castNode(ColumnDef, cmd->def);
    // ADD COLUMN IF NOT EXISTS of a column that exists adds nothing.
    if (cmd->missing_ok && get_attnum(relid, column->colname) != InvalidAttrNumber) return false;
    if (is_serial(column->typeName) || column->identity) return true;
    Node *raw = column->raw_default;
    ListCell *lc;
    foreach (lc, column->constraints) {
        Node *node = static_cast<Node *>(lfirst(lc));
        if (!IsA(node, Constraint)) continue;
        auto *constraint = reinterpret_cast<Constraint *>(node);
        if (constraint->contype == CONSTR_IDENTITY) return true;
        if (constraint->contype == CONSTR_GENERATED) return false;
        if (constraint->contype == CONSTR_DEFAULT) raw = constraint->raw_expr;
    }
    Oid type = InvalidOid;
    int32 typmod = -1;
    typenameTypeIdAndMod(nullptr, column->typeName, &type, &typmod);
    Node *expr = nullptr;
    if (raw) {
        ParseState *pstate = make_parsestate(nullptr);
        pstate->p_sourcetext = query;
        expr = cookDefault(pstate, raw, type, typmod, column->colname, '\0');
    } else {
        expr = get_typdefault(type);
    }
    return expr && contain_mutable_functions(expr);
}

// ALTER TABLE ... ALTER COLUMN TYPE: the USING expression, or the column
// itself, coerced to the new type, as transformAlterTableStmt and
// ATPrepAlterColumnType build it. A cast can be mutable too (text to
// timestamptz reads TimeZone).
bool conversion_is_mutable(Oid relid, const AlterTableCmd *cmd, const char *query) {
    auto *def = castNode(ColumnDef, cmd->def);
    Relation rel = relation_open(relid, AccessShareLock);
    ParseState *pstate = make_parsestate(nullptr);
    pstate->p_sourcetext = query;
    ParseNamespaceItem *nsitem =
        addRangeTableEntryForRelation(pstate, rel, AccessShareLock, nullptr, false, true);
    addNSItemToQuery(pstate, nsitem, false, true, true);
    Oid type = InvalidOid;
    int32 typmod = -1;
    typenameTypeIdAndMod(pstate, def->typeName, &type, &typmod);
    Node *expr = nullptr;
    if (def->raw_default) {
        expr = transformExpr(pstate, def->raw_default, EXPR_KIND_ALTER_COL_TRANSFORM);
    } else {
        HeapTuple tuple = SearchSysCacheAttName(relid, cmd->name);
        if (HeapTupleIsValid(tuple)) {
            auto *att = reinterpret_cast<Form_pg_attribute>(GETSTRUCT(tuple));
            expr = reinterpret_cast<Node *>(
                makeVar(1, att->attnum, att->atttypid, att->atttypmod, att->attcollation, 0));
            ReleaseSysCache(tuple);
        }
    }
    if (expr)
        expr = coerce_to_target_type(pstate, expr, exprType(expr), type, typmod,
                                     COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
    relation_close(rel, NoLock);
    return expr && contain_mutable_functions(expr);
}

// Only tables hold rows that ADD COLUMN and ALTER COLUMN TYPE compute
// values for (a foreign table's are on its server).
void check_expressions(Description *d, const AlterTableStmt *stmt, const char *query) {
    if (!OidIsValid(d->altered) || !holds_rows(d->altered_relkind)) return;
    Oid relid = d->altered;
    ddl::Command &c = d->command;
    ListCell *lc;
    foreach (lc, stmt->cmds) {
        auto *cmd = lfirst_node(AlterTableCmd, lc);
        if (!cmd->def || !IsA(cmd->def, ColumnDef)) continue;
        if (cmd->subtype == AT_AddColumn && !c.non_immutable_default)
            c.non_immutable_default =
                unless_error([&] { return default_is_mutable(relid, cmd, query); });
        else if (cmd->subtype == AT_AlterColumnType && !c.non_immutable_conversion)
            c.non_immutable_conversion =
                unless_error([&] { return conversion_is_mutable(relid, cmd, query); });
    }
}

// ---------------------------------------------------------------------------
// Temporary views

// DefineView's test: a view whose query uses a temporary relation is
// temporary, TEMP or not. The query is analyzed as DefineView analyzes it
// (parse analysis does not change its input; a copy anyway).
bool view_is_temporary(const ViewStmt *stmt, const char *query) {
    RawStmt *raw = makeNode(RawStmt);
    raw->stmt = static_cast<Node *>(copyObjectImpl(stmt->query));
    raw->stmt_location = -1;
    Query *analyzed = parse_analyze_fixedparams(raw, query, nullptr, 0, nullptr);
    return isQueryUsingTempRelation(analyzed);
}

// ---------------------------------------------------------------------------
// The primary-key warning

// A permanent table that holds rows and has no primary key, after CREATE
// TABLE ran (a partition has its parent's by now, and LIKE ... INCLUDING
// copied one). pgmesh's own tables are not replicated by this statement.
void warn_keyless(const RangeVar *rv) {
    Oid relid = existing(rv);
    if (!OidIsValid(relid)) return;
    // CREATE TABLE IF NOT EXISTS may name a table someone else can drop.
    Relation rel = try_relation_open(relid, AccessShareLock);
    if (!rel) return;
    Oid pgmesh = get_namespace_oid("pgmesh", true);
    // Created by this transaction: CREATE TABLE IF NOT EXISTS of an older
    // table was warned about when that was created.
    bool keyless =
        rel->rd_createSubid != InvalidSubTransactionId && holds_rows(rel->rd_rel->relkind) &&
        rel->rd_rel->relpersistence == RELPERSISTENCE_PERMANENT &&
        RelationGetNamespace(rel) != pgmesh && !OidIsValid(RelationGetPrimaryKeyIndex(rel));
    const char *name = pstrdup(RelationGetRelationName(rel));
    const char *schema = get_namespace_name(RelationGetNamespace(rel));
    relation_close(rel, AccessShareLock);
    if (!keyless) return;
    ereport(WARNING,
            (errcode(ERRCODE_WARNING), errmsg("table \"%s\" has no primary key", name),
             errdetail("pgmesh replicates its INSERTs, but refuses UPDATE and DELETE on it on "
                       "every node."),
             errhint("Add one: ALTER TABLE %s ADD PRIMARY KEY (...);",
                     quote_qualified_identifier(schema, name))));
}

// CREATE SCHEMA's tables go into the new schema unless they name another.
void warn_keyless_in_schema(const CreateSchemaStmt *stmt) {
    const char *schema = stmt->schemaname ? stmt->schemaname : get_rolespec_name(stmt->authrole);
    ListCell *lc;
    foreach (lc, stmt->schemaElts) {
        Node *elt = static_cast<Node *>(lfirst(lc));
        if (!IsA(elt, CreateStmt)) continue;
        const RangeVar *named = reinterpret_cast<CreateStmt *>(elt)->relation;
        warn_keyless(makeRangeVar(named->schemaname ? named->schemaname : pstrdup(schema),
                                  named->relname, -1));
    }
}

}  // namespace

Statement describe(const PlannedStmt &stmt, const char *query_string) {
    Node *parse = stmt.utilityStmt;
    Description d;
    pg::call([&] {
        d.command.tag = GetCommandTagName(parse ? CreateCommandTag(parse) : CMDTAG_UNKNOWN);
        if (parse) describe_node(&d, parse);
    });
    if (parse && IsA(parse, AlterTableStmt))
        check_expressions(&d, castNode(AlterTableStmt, parse), query_string);
    if (parse && IsA(parse, ViewStmt)) {
        if (d.view_persistence == RELPERSISTENCE_PERMANENT && unless_error([&] {
                return view_is_temporary(castNode(ViewStmt, parse), query_string);
            }))
            d.view_persistence = RELPERSISTENCE_TEMP;
        note_persistence(&d, d.view_persistence);
    }
    settle_persistence(&d);

    Statement st;
    st.command = d.command;
    st.all_tables = d.all_tables;
    st.tables.reserve(static_cast<size_t>(list_length(d.tables)));
    ListCell *lc;
    foreach (lc, d.tables) st.tables.push_back(lfirst_oid(lc));
    return st;
}

void warn_if_keyless(const PlannedStmt &stmt) {
    Node *parse = stmt.utilityStmt;
    if (!parse) return;
    pg::call([&] {
        if (IsA(parse, CreateStmt))
            warn_keyless(castNode(CreateStmt, parse)->relation);
        else if (IsA(parse, CreateSchemaStmt))
            warn_keyless_in_schema(castNode(CreateSchemaStmt, parse));
    });
}

}  // namespace pgmesh::ddl_describe
