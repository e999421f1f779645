#include "fault.hpp"

#include <string>
#include <string_view>

#include "postgres_headers.hpp"

namespace pgmesh::fault {

char *points = nullptr;

bool armed(const char *point) {
    if (!points || !*points) return false;
    std::string_view list(points);
    std::string_view wanted(point);
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (item == wanted) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

void hold_if_armed(const char *point) {
    if (!armed(point)) return;
    char *name = psprintf("pgmesh fault %s", point);
    Datum key = Int64GetDatum(DatumGetInt32(
        DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID, CStringGetTextDatum(name))));
    ereport(LOG, (errmsg("pgmesh fault point \"%s\" holds", point)));
    DirectFunctionCall1(pg_advisory_lock_int8, key);
    DirectFunctionCall1(pg_advisory_unlock_int8, key);
}

}  // namespace pgmesh::fault
