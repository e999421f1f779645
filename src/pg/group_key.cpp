#include "group_key.hpp"

#include <vector>

#include "guard.hpp"
#include "spi.hpp"

namespace pgmesh::group_key {

namespace {

constexpr size_t kKeySize = 32;

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

std::string generate_hex() {
    uint8_t key[kKeySize];
    bool ok = pg::call([&] { return pg_strong_random(key, sizeof key); });
    if (!ok) throw pg::Error(ERRCODE_INTERNAL_ERROR, "could not generate a random group key");
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string hex;
    for (uint8_t b : key) {
        hex.push_back(kDigits[b >> 4]);
        hex.push_back(kDigits[b & 15]);
    }
    return hex;
}

mesh::Mac mac() {
    spi::Rows rows =
        spi::query("SELECT pg_catalog.encode(group_key, 'hex') FROM pgmesh.local_node");
    if (rows.empty() || !rows[0][0] || rows[0][0]->size() != 2 * kKeySize)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "this database is not a pgmesh node (no group key)");
    std::vector<uint8_t> key;
    const std::string &hex = *rows[0][0];
    for (size_t i = 0; i < hex.size(); i += 2)
        key.push_back(static_cast<uint8_t>(hex_digit(hex[i]) * 16 + hex_digit(hex[i + 1])));
    return [key = std::move(key)](std::string_view data) {
        mesh::MacValue out{};
        bool ok = pg::call([&] {
            // With OpenSSL the context belongs to a resource owner; the
            // manager and apply workers also seal and open messages between
            // transactions, where there is none.
            static ResourceOwner between_transactions = nullptr;
            ResourceOwner saved = CurrentResourceOwner;
            if (!CurrentResourceOwner) {
                if (!between_transactions)
                    between_transactions = ResourceOwnerCreate(nullptr, "pgmesh HMAC");
                CurrentResourceOwner = between_transactions;
            }
            pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
            bool good = ctx && pg_hmac_init(ctx, key.data(), key.size()) == 0 &&
                        pg_hmac_update(ctx, reinterpret_cast<const uint8 *>(data.data()),
                                       data.size()) == 0 &&
                        pg_hmac_final(ctx, out.data(), out.size()) == 0;
            pg_hmac_free(ctx);
            CurrentResourceOwner = saved;
            return good;
        });
        if (!ok) throw pg::Error(ERRCODE_INTERNAL_ERROR, "could not compute HMAC-SHA256");
        return out;
    };
}

}  // namespace pgmesh::group_key
