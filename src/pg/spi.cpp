#include "spi.hpp"

#include "guard.hpp"
#include "user_context.hpp"

namespace pgmesh::spi {

Param text(std::string_view value) {
    return Param{TEXTOID, false, std::string(value), 0};
}

Param text_or_null(const std::optional<std::string> &value) {
    return value ? text(*value) : Param{};
}

Param int8(int64_t value) {
    return Param{INT8OID, false, {}, value};
}

Param timestamptz_or_null(TimestampTz value) {
    return Param{TIMESTAMPTZOID, value == 0, {}, value};
}

Param lsn(uint64_t value) {
    return Param{LSNOID, false, {}, static_cast<int64_t>(value)};
}

Rows query(const char *sql, const std::vector<Param> &params) {
    Rows rows;
    const int nargs = static_cast<int>(params.size());
    pg::call([&] {
        Oid *types = static_cast<Oid *>(palloc0(sizeof(Oid) * (nargs + 1)));
        Datum *values = static_cast<Datum *>(palloc0(sizeof(Datum) * (nargs + 1)));
        char *nulls = static_cast<char *>(palloc0(nargs + 1));
        for (int i = 0; i < nargs; i++) {
            const Param &p = params[i];
            types[i] = p.type;
            nulls[i] = p.is_null ? 'n' : ' ';
            if (p.is_null) continue;
            values[i] = p.type == TEXTOID ? PointerGetDatum(cstring_to_text_with_len(
                                                p.text.data(), static_cast<int>(p.text.size())))
                                          : Int64GetDatum(p.integer);
        }
        // Workers have no statement snapshot of their own.
        bool push_snapshot = !ActiveSnapshotSet();
        if (push_snapshot) PushActiveSnapshot(GetTransactionSnapshot());
        user_context::Saved saved = user_context::switch_to_pgmesh();
        SPI_connect();
        // Not read-only: a fresh snapshot per statement, for callers that poll.
        int rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
        if (rc < 0) elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
        for (uint64 i = 0; SPI_tuptable && i < SPI_processed; i++) {
            rows.emplace_back();
            for (int c = 1; c <= SPI_tuptable->tupdesc->natts; c++) {
                char *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c);
                rows.back().push_back(v ? Value(v) : std::nullopt);
            }
        }
        SPI_finish();
        user_context::restore(saved);
        if (push_snapshot) PopActiveSnapshot();
    });
    return rows;
}

}  // namespace pgmesh::spi
