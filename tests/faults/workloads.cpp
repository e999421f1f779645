#include "workloads.hpp"

#include <algorithm>
#include <array>
#include <sstream>
#include <thread>

#include "schedule.hpp"

namespace pgmesh::faults {

using namespace std::chrono_literals;

namespace {

constexpr size_t kExamplesPerKind = 5;
constexpr std::chrono::seconds kClientConnectTimeout{3};
constexpr std::chrono::milliseconds kReconnectPause{200};

bool is_plain_sql_error(const pq::Error &error) {
    // Connection loss (08), the server shutting down or crashing (57P0x),
    // and libpq's own failures (XX000 without a server message) leave the
    // outcome of a COMMIT unknown.
    const std::string &s = error.sqlstate();
    return !(s.starts_with("08") || s.starts_with("57P") || s == "XX000");
}

std::string value_text(const pq::Value &value) {
    return value ? *value : "NULL";
}

}  // namespace

bool Session::ensure_connected() {
    if (connection_ && connection_->is_ok()) return true;
    connection_.reset();
    try {
        connection_.emplace(pq::Connection::open(dsn_, kClientConnectTimeout));
        // The servers' warnings as sessions are cut off ("terminating
        // connection because of crash of another server process") are
        // expected here: the errors that follow are what is counted.
        PQsetNoticeProcessor(
            connection_->native(), [](void *, const char *) {}, nullptr);
        return true;
    } catch (const pq::Error &) {
        return false;
    }
}

Outcome Session::transaction(std::string_view begin, const std::vector<std::string> &statements,
                             const std::vector<std::vector<pq::Value>> &params,
                             std::map<std::string, uint64_t> &errors, pq::Rows *rows) {
    if (!ensure_connected()) {
        errors["connect"]++;
        std::this_thread::sleep_for(kReconnectPause);
        return Outcome::kFailed;
    }
    const bool single = statements.size() == 1 && begin.empty();
    bool at_commit = single;
    try {
        if (!single) connection_->exec(begin);
        for (size_t i = 0; i < statements.size(); i++) {
            pq::Result result = connection_->exec_params(statements[i], params[i]);
            if (rows != nullptr && i + 1 == statements.size()) *rows = result.rows();
        }
        if (!single) {
            at_commit = true;
            connection_->exec("COMMIT");
        }
        return Outcome::kAcknowledged;
    } catch (const pq::Error &error) {
        errors[error.sqlstate()]++;
        const bool plain = is_plain_sql_error(error);
        if (!plain) {
            connection_.reset();
        } else if (!single && !at_commit) {
            try {
                connection_->exec("ROLLBACK");
            } catch (const pq::Error &) {
                connection_.reset();
            }
        }
        return at_commit && !plain ? Outcome::kUncertain : Outcome::kFailed;
    }
}

void Workloads::record(std::string_view workload, Outcome outcome,
                       const std::map<std::string, uint64_t> &errors) {
    std::lock_guard lock(mutex_);
    Counters &c = counters_[std::string(workload)];
    switch (outcome) {
        case Outcome::kAcknowledged:
            c.acknowledged++;
            break;
        case Outcome::kUncertain:
            c.uncertain++;
            break;
        case Outcome::kFailed:
            c.failed++;
            break;
    }
    for (const auto &[sqlstate, count] : errors)
        errors_[std::string(workload) + " " + sqlstate] += count;
}

std::map<std::string, Counters> Workloads::counters() const {
    std::lock_guard lock(mutex_);
    return counters_;
}

std::map<std::string, uint64_t> Workloads::errors() const {
    std::lock_guard lock(mutex_);
    return errors_;
}

void Workloads::create_schema(const std::vector<ClientTarget> &targets) {
    pq::Connection first = pq::Connection::open(targets.at(0).dsn);
    // fault_uniq has no key on purpose (a duplicate shows as a second row);
    // pgmesh warns about that.
    first.exec("SET client_min_messages = error");
    first.exec("SET pgmesh.permit_ddl_locking = on");
    first.exec("CREATE TABLE fault_uniq (writer int NOT NULL, seq bigint NOT NULL)");
    first.exec(
        "CREATE TABLE fault_bank (owner int, account int, balance bigint NOT NULL, "
        "PRIMARY KEY (owner, account))");
    first.exec("CREATE TABLE fault_hot (k int PRIMARY KEY, v text NOT NULL)");
    for (const ClientTarget &t : targets) {
        pq::Connection conn = pq::Connection::open(t.dsn);
        // The tables arrive by replication.
        for (int attempt = 0;; attempt++) {
            if (conn.query_value(
                    "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'fault\\_%'") == "3")
                break;
            if (attempt > 600) throw std::runtime_error("the tables did not reach every node");
            std::this_thread::sleep_for(100ms);
        }
        const std::array<pq::Value, 3> params = {std::to_string(t.node),
                                                 std::to_string(kAccountsPerOwner),
                                                 std::to_string(kInitialBalance)};
        conn.exec_params(
            "INSERT INTO fault_bank SELECT $1::int, a, $3::bigint FROM generate_series(1, $2::int) "
            "a",
            params);
    }
}

void Workloads::unique_inserts(const ClientTarget &target, const std::atomic<bool> &stop) {
    Session session(target.dsn);
    for (int64_t seq = 1; !stop; seq++) {
        std::map<std::string, uint64_t> errors;
        Outcome outcome =
            session.transaction({}, {"INSERT INTO fault_uniq VALUES ($1, $2)"},
                                {{std::to_string(target.node), std::to_string(seq)}}, errors);
        {
            std::lock_guard lock(mutex_);
            if (outcome == Outcome::kAcknowledged) uniq_acknowledged_.insert({target.node, seq});
            if (outcome == Outcome::kUncertain) uniq_uncertain_.insert({target.node, seq});
        }
        record("unique inserts", outcome, errors);
        std::this_thread::sleep_for(pace_);
    }
}

void Workloads::bank_transfers(const ClientTarget &target, const std::atomic<bool> &stop) {
    Session session(target.dsn);
    Random random(target.seed ^ 0xBA4C);
    const std::string owner = std::to_string(target.node);
    while (!stop) {
        const int64_t from = random.between(1, kAccountsPerOwner);
        int64_t to = random.between(1, kAccountsPerOwner - 1);
        if (to >= from) to++;
        const std::string amount = std::to_string(random.between(1, 50));
        std::map<std::string, uint64_t> errors;
        Outcome outcome = session.transaction(
            "BEGIN",
            {"UPDATE fault_bank SET balance = balance - $3 WHERE owner = $1 AND account = $2",
             "UPDATE fault_bank SET balance = balance + $3 WHERE owner = $1 AND account = $2"},
            {{owner, std::to_string(from), amount}, {owner, std::to_string(to), amount}}, errors);
        record("bank transfers", outcome, errors);
        std::this_thread::sleep_for(pace_);
    }
}

void Workloads::bank_reads(const ClientTarget &target, const std::atomic<bool> &stop) {
    Session session(target.dsn);
    while (!stop) {
        std::map<std::string, uint64_t> errors;
        pq::Rows rows;
        Outcome outcome = session.transaction(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            {"SELECT owner, sum(balance), count(*) FROM fault_bank GROUP BY owner ORDER BY owner"},
            {{}}, errors, &rows);
        record("bank reads", outcome, errors);
        if (outcome == Outcome::kAcknowledged) {
            const std::string expected_sum = std::to_string(kAccountsPerOwner * kInitialBalance);
            const std::string expected_count = std::to_string(kAccountsPerOwner);
            bool partial = static_cast<int>(rows.size()) != nodes_;
            std::ostringstream seen;
            for (const pq::Row &row : rows) {
                partial = partial || value_text(row[1]) != expected_sum ||
                          value_text(row[2]) != expected_count;
                seen << " owner " << value_text(row[0]) << ": " << value_text(row[1]) << " in "
                     << value_text(row[2]) << " accounts;";
            }
            if (partial) {
                std::lock_guard lock(mutex_);
                partial_reads_++;
                if (partial_read_examples_.size() < kExamplesPerKind)
                    partial_read_examples_.push_back(
                        "partial read on node" + std::to_string(target.node) + ":" + seen.str());
            }
        }
        std::this_thread::sleep_for(pace_);
    }
}

void Workloads::contended_writes(const ClientTarget &target, const std::atomic<bool> &stop) {
    Session session(target.dsn);
    Random random(target.seed ^ 0x407);
    for (int64_t seq = 1; !stop; seq++) {
        const std::string key = std::to_string(random.between(1, kHotKeys));
        const std::string value = "n" + std::to_string(target.node) + "-" + std::to_string(seq);
        const int64_t pick = random.between(1, 100);
        std::string statement;
        std::vector<pq::Value> params{key};
        if (pick <= 45) {
            statement =
                "INSERT INTO fault_hot (k, v) VALUES ($1, $2) "
                "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";
            params.push_back(value);
        } else if (pick <= 80) {
            statement = "UPDATE fault_hot SET v = $2 WHERE k = $1";
            params.push_back(value);
        } else {
            statement = "DELETE FROM fault_hot WHERE k = $1";
        }
        std::map<std::string, uint64_t> errors;
        Outcome outcome = session.transaction({}, {statement}, {params}, errors);
        if (outcome != Outcome::kFailed && params.size() == 2) {
            std::lock_guard lock(mutex_);
            hot_written_.insert(value);
        }
        record("contended keys", outcome, errors);
        std::this_thread::sleep_for(pace_);
    }
}

void Workloads::schema_changes(const std::vector<ClientTarget> &targets,
                               const std::atomic<bool> &stop) {
    std::vector<std::string> to_drop;
    auto pause = [&](std::chrono::milliseconds length) {
        for (auto slept = 0ms; slept < length && !stop; slept += 100ms)
            std::this_thread::sleep_for(100ms);
    };
    for (int round = 1; !stop; round++) {
        const ClientTarget &target = targets[static_cast<size_t>(round) % targets.size()];
        Session session(target.dsn);
        auto run = [&](const std::string &ddl) {
            std::map<std::string, uint64_t> errors;
            Outcome outcome =
                session.transaction("BEGIN",
                                    {"SET LOCAL pgmesh.permit_ddl_locking = on",
                                     "SET LOCAL pgmesh.ddl_lock_timeout = 10000", ddl},
                                    {{}, {}, {}}, errors);
            record("schema changes", outcome, errors);
            std::lock_guard lock(mutex_);
            std::string errors_text;
            for (const auto &[sqlstate, count] : errors) errors_text += " " + sqlstate;
            schema_log_.push_back("node" + std::to_string(target.node) + ": " + ddl + " -> " +
                                  (outcome == Outcome::kAcknowledged ? "ok"
                                   : outcome == Outcome::kUncertain  ? "uncertain" + errors_text
                                                                     : "failed" + errors_text));
            return outcome;
        };
        // A drop that failed before is tried again first.
        std::vector<std::string> still_to_drop;
        for (const std::string &column : to_drop) {
            if (run("ALTER TABLE fault_hot DROP COLUMN IF EXISTS " + column) !=
                Outcome::kAcknowledged)
                still_to_drop.push_back(column);
        }
        to_drop = std::move(still_to_drop);
        const std::string column = "c" + std::to_string(round);
        if (run("ALTER TABLE fault_hot ADD COLUMN " + column + " int") != Outcome::kFailed)
            to_drop.push_back(column);
        pause(4s);
        if (stop) break;
        std::vector<std::string> remaining;
        for (const std::string &c : to_drop) {
            if (run("ALTER TABLE fault_hot DROP COLUMN IF EXISTS " + c) != Outcome::kAcknowledged)
                remaining.push_back(c);
        }
        to_drop = std::move(remaining);
        pause(8s);
    }
}

void Workloads::note_example(Findings &findings, std::string text) const {
    if (findings.examples.size() < 40) findings.examples.push_back(std::move(text));
}

Workloads::Findings Workloads::check(const std::vector<ClientTarget> &targets) {
    Findings findings;
    std::lock_guard lock(mutex_);
    findings.partial_reads = partial_reads_;
    for (const std::string &example : partial_read_examples_) note_example(findings, example);

    std::optional<std::string> first_columns;
    for (const ClientTarget &t : targets) {
        pq::Connection conn = pq::Connection::open(t.dsn);
        const std::string node = "node" + std::to_string(t.node);

        // Unique inserts: count per (writer, seq).
        std::map<std::pair<int, int64_t>, int> present;
        for (const pq::Row &row :
             conn.exec("SELECT writer, seq, count(*) FROM fault_uniq GROUP BY writer, seq")
                 .rows()) {
            present[{std::stoi(*row[0]), std::stoll(*row[1])}] = std::stoi(*row[2]);
        }
        size_t lost_here = 0;
        for (const auto &key : uniq_acknowledged_) {
            if (!present.contains(key)) {
                lost_here++;
                if (lost_here <= kExamplesPerKind)
                    note_example(findings, node + " lacks acknowledged fault_uniq row (writer " +
                                               std::to_string(key.first) + ", seq " +
                                               std::to_string(key.second) + ")");
            }
        }
        findings.lost += lost_here;
        for (const auto &[key, count] : present) {
            if (count > 1) {
                findings.duplicated += static_cast<uint64_t>(count - 1);
                note_example(findings, node + " has fault_uniq row (writer " +
                                           std::to_string(key.first) + ", seq " +
                                           std::to_string(key.second) + ") " +
                                           std::to_string(count) + " times");
            } else if (!uniq_acknowledged_.contains(key) && !uniq_uncertain_.contains(key)) {
                findings.foreign_values++;
                note_example(findings, node + " has fault_uniq row (writer " +
                                           std::to_string(key.first) + ", seq " +
                                           std::to_string(key.second) +
                                           ") that no client committed");
            }
        }

        // The bank at rest.
        for (const pq::Row &row : conn.exec("SELECT owner, sum(balance), count(*) FROM fault_bank "
                                            "GROUP BY owner ORDER BY owner")
                                      .rows()) {
            if (value_text(row[1]) != std::to_string(kAccountsPerOwner * kInitialBalance) ||
                value_text(row[2]) != std::to_string(kAccountsPerOwner)) {
                findings.partial_reads++;
                note_example(findings, node + " ends with owner " + value_text(row[0]) + ": " +
                                           value_text(row[1]) + " in " + value_text(row[2]) +
                                           " accounts");
            }
        }

        // Contended keys: values a client wrote, and a history that agrees.
        for (const pq::Row &row : conn.exec("SELECT k, v FROM fault_hot ORDER BY k").rows()) {
            const std::string key = value_text(row[0]);
            const std::string value = value_text(row[1]);
            if (!hot_written_.contains(value)) {
                findings.foreign_values++;
                note_example(findings, node + " has fault_hot k=" + key + " v=" + value +
                                           ", which no client wrote");
            }
            const std::array<pq::Value, 2> params = {key, value};
            pq::Result against = conn.exec_params(
                "SELECT count(*) FROM pgmesh.conflict_history WHERE table_name = 'fault_hot' AND "
                "((remote_tuple->>'k' = $1 AND remote_tuple->>'v' = $2 AND "
                "  resolution IN ('keep_local', 'skip')) OR "
                " (local_tuple->>'k' = $1 AND local_tuple->>'v' = $2 AND "
                "  resolution = 'apply_remote'))",
                params);
            if (against.get(0, 0) != "0") {
                findings.inconsistent_conflicts++;
                note_example(findings, node + "'s conflict history shows fault_hot k=" + key +
                                           " v=" + value + " losing, yet it is the final value");
            }
        }

        // Schema changes: the same columns everywhere.
        std::string columns = *conn.query_value(
            "SELECT string_agg(attname, ',' ORDER BY attname) FROM pg_attribute "
            "WHERE attrelid = 'fault_hot'::regclass AND attnum > 0 AND NOT attisdropped");
        if (!first_columns) {
            first_columns = columns;
        } else if (columns != *first_columns) {
            findings.schema_differences++;
            note_example(findings, node + " has fault_hot columns " + columns + ", node" +
                                       std::to_string(targets[0].node) + " " + *first_columns);
        }
    }
    if (findings.schema_differences > 0) {
        for (const std::string &line : schema_log_) note_example(findings, "  ddl " + line);
    }
    return findings;
}

}  // namespace pgmesh::faults
