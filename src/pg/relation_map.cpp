#include "relation_map.hpp"

#include <algorithm>
#include <string>

#include "guard.hpp"
#include "replicated.hpp"
#include "spi.hpp"

namespace pgmesh::apply {

namespace {

[[noreturn]] void apply_error(int code, const char *fmt, const char *a, const char *b = "") {
    ereport(ERROR, (errcode(code), errmsg(fmt, a, b)));
    pg_unreachable();
}

}  // namespace

RelationMaps::RelationMaps() {
    cache_context_ = pg::call([] {
        return AllocSetContextCreate(TopMemoryContext, "pgmesh apply relations",
                                     ALLOCSET_DEFAULT_SIZES);
    });
}

void RelationMaps::describe(const proto::Relation &remote) {
    RelationMap &map = maps_[remote.relid];
    map.remote = remote;
    map.is_resolver_table = remote.schema == "pgmesh" && remote.name == "conflict_resolver";
    map.resolved = false;
}

RelationMap &RelationMaps::find(uint32_t remote_relid) {
    auto it = maps_.find(remote_relid);
    if (it == maps_.end())
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent a change for relation " +
                                                        std::to_string(remote_relid) +
                                                        " before describing it");
    return it->second;
}

void RelationMaps::prepare(RelationMap &map, uint64_t resolvers_version) {
    if (!map.resolved) {
        map.columns.assign(map.remote.columns.size(), ColumnMap{});
        // Marked first: an invalidation while resolving marks it stale again.
        map.resolved = true;
        try {
            lookup_local(map);
        } catch (...) {
            map.resolved = false;
            throw;
        }
    }
    if (map.resolvers_version != resolvers_version) load_resolvers(map, resolvers_version);
}

void RelationMaps::invalidate(Oid relid) {
    for (auto &[id, map] : maps_)
        if (!OidIsValid(relid) || map.local_relid == relid) map.resolved = false;
}

void RelationMaps::lookup_local(RelationMap &map) {
    pg::call([&] {
        RangeVar *rv =
            makeRangeVar(pstrdup(map.remote.schema.c_str()), pstrdup(map.remote.name.c_str()), -1);
        Oid relid = RangeVarGetRelid(rv, RowExclusiveLock, true);
        if (!OidIsValid(relid))
            apply_error(ERRCODE_UNDEFINED_TABLE,
                        "table \"%s.%s\" that the peer replicates does not exist on this node",
                        map.remote.schema.c_str(), map.remote.name.c_str());
        Relation rel = table_open(relid, NoLock);
        if (rel->rd_rel->relkind != RELKIND_RELATION)
            apply_error(ERRCODE_WRONG_OBJECT_TYPE, "\"%s.%s\" is not a table on this node",
                        map.remote.schema.c_str(), map.remote.name.c_str());
        TupleDesc desc = RelationGetDescr(rel);
        for (size_t i = 0; i < map.remote.columns.size(); i++) {
            const proto::Column &remote = map.remote.columns[i];
            ColumnMap &col = map.columns[i];
            for (int a = 0; a < desc->natts; a++) {
                Form_pg_attribute att = TupleDescAttr(desc, a);
                if (att->attisdropped || att->attgenerated ||
                    strcmp(NameStr(att->attname), remote.name.c_str()) != 0)
                    continue;
                col.local_attnum = att->attnum;
                col.local_type = att->atttypid;
                col.local_typmod = att->atttypmod;
            }
            if (col.local_attnum == InvalidAttrNumber)
                apply_error(ERRCODE_UNDEFINED_COLUMN,
                            "column \"%s\" that the peer replicates does not exist in \"%s\"",
                            remote.name.c_str(), RelationGetRelationName(rel));
            Oid func = InvalidOid;
            getTypeInputInfo(col.local_type, &func, &col.input_ioparam);
            fmgr_info_cxt(func, &col.text_input, cache_context_);
            HeapTuple typtup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(col.local_type));
            if (HeapTupleIsValid(typtup)) {
                Oid receive = ((Form_pg_type)GETSTRUCT(typtup))->typreceive;
                ReleaseSysCache(typtup);
                if (OidIsValid(receive)) {
                    fmgr_info_cxt(receive, &col.binary_input, cache_context_);
                    col.has_binary_input = true;
                }
            }
            // Binary values come only for built-in types, whose OIDs are the
            // same on every node: a different one here is read as the
            // remote type and converted through text.
            if (remote.type_oid != col.local_type && remote.type_oid < FirstNormalObjectId &&
                SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(remote.type_oid))) {
                Oid receive = InvalidOid;
                Oid output = InvalidOid;
                bool varlena = false;
                getTypeBinaryInputInfo(remote.type_oid, &receive, &col.remote_ioparam);
                getTypeOutputInfo(remote.type_oid, &output, &varlena);
                fmgr_info_cxt(receive, &col.remote_receive, cache_context_);
                fmgr_info_cxt(output, &col.remote_output, cache_context_);
                col.converts = true;
            }
        }
        map.local_only.clear();
        for (int a = 0; a < desc->natts; a++) {
            Form_pg_attribute att = TupleDescAttr(desc, a);
            if (att->attisdropped || att->attgenerated) continue;
            bool sent =
                std::any_of(map.columns.begin(), map.columns.end(),
                            [&](const ColumnMap &c) { return c.local_attnum == att->attnum; });
            if (!sent) map.local_only.push_back(att->attnum);
        }
        map.local_relid = relid;
        map.owner = rel->rd_rel->relowner;
        map.key_index = replicated::key_index(rel);
        map.unique_indexes.clear();
        List *indexes = RelationGetIndexList(rel);
        ListCell *lc;
        foreach (lc, indexes) {
            Oid index_oid = lfirst_oid(lc);
            if (index_oid == map.key_index) continue;
            Relation index = index_open(index_oid, AccessShareLock);
            Form_pg_index form = index->rd_index;
            // Plain immediate unique indexes only: expression and partial
            // indexes cannot be probed with a row.
            bool usable = form->indisunique && form->indimmediate && form->indisvalid &&
                          RelationGetIndexExpressions(index) == NIL &&
                          RelationGetIndexPredicate(index) == NIL;
            if (usable) {
                UniqueIndex u;
                u.oid = index_oid;
                for (int k = 0; k < form->indnkeyatts; k++)
                    u.attnums.push_back(form->indkey.values[k]);
                map.unique_indexes.push_back(std::move(u));
            }
            index_close(index, AccessShareLock);
        }
        table_close(rel, NoLock);
    });
}

void RelationMaps::load_resolvers(RelationMap &map, uint64_t version) {
    for (int t = 0; t < conflict::kTypeCount; t++)
        map.resolvers[t] =
            ResolverChoice{conflict::default_resolver(static_cast<conflict::Type>(t)), InvalidOid};
    spi::Rows rows = spi::query(
        "SELECT conflict_type, resolver, "
        "CASE WHEN resolver LIKE '%(%' THEN pg_catalog.to_regprocedure(resolver)::pg_catalog.oid "
        "END FROM pgmesh.conflict_resolver WHERE table_schema = $1 AND table_name = $2",
        {spi::text(map.remote.schema), spi::text(map.remote.name)});
    for (const spi::Row &row : rows) {
        auto type = conflict::parse_type(row.at(0).value_or(""));
        if (!type) continue;
        ResolverChoice &choice = map.resolvers[static_cast<size_t>(*type)];
        if (auto builtin = conflict::parse_resolver(row.at(1).value_or("")))
            choice = ResolverChoice{*builtin, InvalidOid};
        else if (row.at(2))
            choice = ResolverChoice{conflict::Resolver::kUserFunction,
                                    static_cast<Oid>(std::stoul(*row.at(2)))};
    }
    map.resolvers_version = version;
}

}  // namespace pgmesh::apply
