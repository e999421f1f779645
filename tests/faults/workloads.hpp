// Client workloads of a fault run and the checks of what they recorded.
//
// Every client keeps a record of what the server acknowledged (COMMIT
// returned), what is uncertain (the connection or the server went away
// during the COMMIT, so it may or may not have committed) and what failed
// (an error before COMMIT: certainly not committed). The checks then compare
// the final tables of every node with those records:
//
// - unique inserts (`fault_uniq`, no key, so a row applied twice shows as two
//   rows): every acknowledged row on every node, none twice;
// - a bank per node (`fault_bank`): transfers move money between the
//   accounts of one owner, only on the owner's node. Readers on every node
//   take snapshots during the run: each owner's total must always be the
//   same, or a peer's transaction was seen half applied (a partial read);
// - contended keys (`fault_hot`): upserts, updates and deletes of four keys
//   from every node. At the end the final value of each key is one a client
//   wrote, and no node's conflict history shows that value losing;
// - schema changes: a column of fault_hot added and dropped under the
//   global DDL lock while the others write; all nodes end with the same
//   columns.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "pq.hpp"

namespace pgmesh::faults {

// How a client's transaction ended.
enum class Outcome { kAcknowledged, kUncertain, kFailed };

// A session to one node that reconnects after it lost its connection.
class Session {
public:
    explicit Session(std::string dsn) : dsn_(std::move(dsn)) {}
    // Runs the statements in one transaction (BEGIN ... COMMIT, or alone
    // when there is one). A failure before the COMMIT is kFailed; a failure
    // at the COMMIT (or of the single statement) that is not a plain SQL
    // error is kUncertain. `errors` counts failures by SQLSTATE.
    Outcome transaction(std::string_view begin, const std::vector<std::string> &statements,
                        const std::vector<std::vector<pq::Value>> &params,
                        std::map<std::string, uint64_t> &errors, pq::Rows *rows = nullptr);
    // Connected (connecting when needed); false if the node does not answer.
    bool ensure_connected();
    pq::Connection *connection() { return connection_ ? &*connection_ : nullptr; }

private:
    std::string dsn_;
    std::optional<pq::Connection> connection_;
};

struct Counters {
    uint64_t acknowledged = 0;
    uint64_t uncertain = 0;
    uint64_t failed = 0;
};

// One node's part of the run, for the clients.
struct ClientTarget {
    int node = 0;
    std::string dsn;  // direct, not through a proxy
    uint64_t seed = 0;
};

class Workloads {
public:
    Workloads(int nodes, std::chrono::milliseconds pace) : nodes_(nodes), pace_(pace) {}

    // Tables and the bank's accounts, created through node 1 with DDL
    // replication (each owner's accounts inserted on the owner's node).
    void create_schema(const std::vector<ClientTarget> &targets);

    // Client bodies; each runs until stop.
    void unique_inserts(const ClientTarget &target, const std::atomic<bool> &stop);
    void bank_transfers(const ClientTarget &target, const std::atomic<bool> &stop);
    void bank_reads(const ClientTarget &target, const std::atomic<bool> &stop);
    void contended_writes(const ClientTarget &target, const std::atomic<bool> &stop);
    // Adds and drops a column of fault_hot on the nodes in turn.
    void schema_changes(const std::vector<ClientTarget> &targets, const std::atomic<bool> &stop);

    struct Findings {
        uint64_t lost = 0;
        uint64_t duplicated = 0;
        uint64_t partial_reads = 0;
        uint64_t foreign_values = 0;          // rows or values no client committed
        uint64_t inconsistent_conflicts = 0;  // history shows the final value losing
        uint64_t schema_differences = 0;
        std::vector<std::string> examples;  // the first few of each, for the report
    };
    // After the run, with every node caught up.
    Findings check(const std::vector<ClientTarget> &targets);

    // name -> counters of each workload, and failures by SQLSTATE.
    std::map<std::string, Counters> counters() const;
    std::map<std::string, uint64_t> errors() const;

    static constexpr int kAccountsPerOwner = 5;
    static constexpr int64_t kInitialBalance = 1000;
    static constexpr int kHotKeys = 4;

private:
    void record(std::string_view workload, Outcome outcome,
                const std::map<std::string, uint64_t> &errors);
    void note_example(Findings &findings, std::string text) const;

    const int nodes_;
    const std::chrono::milliseconds pace_;

    mutable std::mutex mutex_;
    std::map<std::string, Counters> counters_;
    std::map<std::string, uint64_t> errors_;
    // fault_uniq: (writer node, seq) acknowledged / uncertain.
    std::set<std::pair<int, int64_t>> uniq_acknowledged_;
    std::set<std::pair<int, int64_t>> uniq_uncertain_;
    // fault_hot: every value that may have committed.
    std::set<std::string> hot_written_;
    uint64_t partial_reads_ = 0;
    std::vector<std::string> partial_read_examples_;
    std::vector<std::string> schema_log_;
};

}  // namespace pgmesh::faults
