#include "replicated.hpp"

namespace pgmesh::replicated {

bool is_local_catalog(Oid namespace_oid, const char *name) {
    Oid pgmesh_ns = get_namespace_oid("pgmesh", true);
    if (!OidIsValid(pgmesh_ns) || namespace_oid != pgmesh_ns || name == nullptr) return false;
    return strcmp(name, "node") != 0 && strcmp(name, "conflict_resolver") != 0;
}

bool is_local_catalog(Oid relid) {
    // The namespace first: the name is looked up only for pgmesh's tables.
    Oid pgmesh_ns = get_namespace_oid("pgmesh", true);
    if (!OidIsValid(pgmesh_ns) || get_rel_namespace(relid) != pgmesh_ns) return false;
    return is_local_catalog(pgmesh_ns, get_rel_name(relid));
}

bool is_replicated(Relation rel) {
    if (rel->rd_rel->relkind != RELKIND_RELATION ||
        rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT || IsCatalogRelation(rel))
        return false;
    return !is_local_catalog(RelationGetNamespace(rel), RelationGetRelationName(rel));
}

Oid key_index(Relation rel) {
    Oid index = RelationGetReplicaIndex(rel);
    return OidIsValid(index) ? index : RelationGetPrimaryKeyIndex(rel);
}

bool identifies_rows(Relation rel) {
    return rel->rd_rel->relreplident != REPLICA_IDENTITY_NOTHING && OidIsValid(key_index(rel));
}

Bitmapset *key_attrs(Relation rel) {
    return RelationGetIndexAttrBitmap(rel, OidIsValid(RelationGetReplicaIndex(rel))
                                               ? INDEX_ATTR_BITMAP_IDENTITY_KEY
                                               : INDEX_ATTR_BITMAP_PRIMARY_KEY);
}

}  // namespace pgmesh::replicated
