#include "replicated.hpp"

namespace pgmesh::replicated {

bool is_replicated(Relation rel) {
    if (rel->rd_rel->relkind != RELKIND_RELATION ||
        rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT || IsCatalogRelation(rel))
        return false;
    Oid pgmesh_ns = get_namespace_oid("pgmesh", true);
    if (RelationGetNamespace(rel) != pgmesh_ns) return true;
    const char *name = RelationGetRelationName(rel);
    return strcmp(name, "node") == 0 || strcmp(name, "conflict_resolver") == 0;
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
