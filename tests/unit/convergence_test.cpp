// Exhaustive model check of the conflict rule (conflict.hpp): for every small
// history of inserts, updates and deletes written on any node, and every
// order in which the nodes apply each other's changes, all nodes end with the
// same rows, and with the rows the rule promises: per key, those of the
// change with the greatest version (none if that change is a delete).
//
// The model calls classify(), resolve(), default_resolver() and outcome()
// the way apply does, and adds only what apply leaves to PostgreSQL: local
// writes, one FIFO stream per origin and receiver, and what each key holds.
// A rule that is deliberately broken must make the checker fail, which shows
// that the model is able to find divergence at all.
#include "conflict.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace pgmesh::conflict {
namespace {

// Complete executions grow a few hundredfold per op (3 nodes, 1 key: 1.7e7
// at 4 ops, 5.7e9 at 5): a slightly larger model overflows uint64_t.
__extension__ typedef unsigned __int128 Count;

std::string to_string(Count c) {
    if (c == 0) return "0";
    std::string digits;
    for (; c > 0; c /= 10) digits.insert(digits.begin(), static_cast<char>('0' + int(c % 10)));
    return digits;
}

// --- The model ---------------------------------------------------------------

// Capacity of State; a configuration may use less.
constexpr int kMaxNodes = 3;
constexpr int kMaxKeys = 2;
constexpr int kMaxOps = 5;

// What one node holds for one key: KeyState (kind and version) and, for a
// row, its content. The content is the sequence number of the op that wrote
// the row (1 for the first op issued anywhere), so that a node holding the
// same version with other content would be seen.
struct Held {
    uint8_t kind = 0;  // KeyState::Kind
    uint8_t time = 0;  // version.commit_time
    uint8_t node = 0;  // version.node_id
    uint8_t content = 0;
    bool operator==(const Held &) const = default;
};

// One write, as its origin committed it and streams it.
struct Op {
    uint8_t origin = 0;  // node id
    uint8_t key = 0;
    uint8_t change = 0;  // Change
    uint8_t time = 0;    // commit time; the version is (time, origin)
    bool operator==(const Op &) const = default;
};

// The whole system. Bytes only, no padding: states compare and hash as
// their bytes, unused slots stay zero.
struct State {
    std::array<std::array<Held, kMaxKeys>, kMaxNodes> held{};  // [node index][key]
    // [origin index][receiver index]: how many of the origin's ops the
    // receiver applied. The origin's stream is FIFO, so this is where the
    // receiver is in it.
    std::array<std::array<uint8_t, kMaxNodes>, kMaxNodes> applied{};
    std::array<Op, kMaxOps> ops{};  // every op issued, in commit order; op i has content i + 1
    uint8_t issued = 0;
    bool operator==(const State &) const = default;
};
static_assert(std::has_unique_object_representations_v<State>);

struct StateHash {
    size_t operator()(const State &s) const {
        const auto *bytes = reinterpret_cast<const unsigned char *>(&s);
        uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
        for (size_t i = 0; i < sizeof(State); ++i) h = (h ^ bytes[i]) * 0x100000001b3ULL;
        return static_cast<size_t>(h ^ (h >> 29));
    }
};

// A step of an execution: a node writes locally, or applies the next op of
// one origin's stream.
struct Event {
    enum class Kind : uint8_t { kWrite, kApply } kind = Kind::kWrite;
    uint8_t node = 0;                 // index of the writer or of the receiver
    uint8_t origin = 0;               // kApply: index of the origin whose next op is applied
    uint8_t key = 0;                  // kWrite
    Change change = Change::kInsert;  // kWrite
};

// Where a local write's commit time comes from.
enum class Clock : uint8_t {
    // One clock for the whole system that ticks once per write: no skew, no
    // ties.
    kTicks,
    // Every write at the same time: the node id alone orders versions.
    kSameTime,
    // Every write at the same time, unless that version would not be newer
    // than the one the write replaces at its origin (a row or tombstone of a
    // larger node id): then one tick later. That is a clock which never
    // falls behind the version its write overwrites (as a hybrid logical
    // clock), and keeps every tie between concurrent writes.
    kSameTimeUnlessOlder,
};

const char *name(Clock clock) {
    switch (clock) {
        case Clock::kTicks:
            return "one tick per write";
        case Clock::kSameTime:
            return "every write at the same time";
        case Clock::kSameTimeUnlessOlder:
            return "same time unless older than the replaced version";
    }
    return "?";
}

// kSameTime's time (and where kSameTimeUnlessOlder starts). Not 0, so that it
// is newer than "nothing" by its time already, as real commit times are.
constexpr uint8_t kTieTime = 1;

struct ModelConfig {
    int nodes = 3;
    int keys = 1;
    int max_ops = 4;
    Clock clock = Clock::kTicks;
};

std::string describe(const ModelConfig &c) {
    return std::to_string(c.nodes) + " nodes, " + std::to_string(c.keys) +
           (c.keys == 1 ? " key, " : " keys, ") + "up to " + std::to_string(c.max_ops) + " ops, " +
           name(c.clock);
}

// What a receiving node does with one remote change.
struct Decision {
    std::optional<Type> type;  // classify(); none: the change simply applies
    std::optional<Resolver> resolver;
    std::optional<Resolution> resolution;
    Outcome outcome = Outcome::kUnchanged;
};

// The apply step under test, as a function object, so that the checker can
// be pointed at a broken rule too.
struct Rule {
    std::string name;
    std::function<Decision(Change change, const KeyState &local, const Version &remote,
                           uint64_t peer)>
        decide;
    bool tombstones = true;  // a delete leaves a tombstone (else the key holds nothing)
};

// Apply's steps (conflict.hpp): classify, resolve under the resolver that
// `resolver_of` picks for the conflict, outcome.
Rule rule_with(std::string rule_name, std::function<Resolver(Type)> resolver_of,
               bool tombstones = true) {
    auto decide = [resolver_of = std::move(resolver_of)](Change change, const KeyState &local,
                                                         const Version &remote, uint64_t peer) {
        Decision d;
        d.type = classify(change, local, peer);
        if (d.type) {
            d.resolver = resolver_of(*d.type);
            d.resolution = resolve(*d.type, *d.resolver, local.version, remote);
        }
        // kError stops apply (the model reports it); outcome() never sees it.
        if (d.resolution != Resolution::kError) d.outcome = outcome(change, d.resolution);
        return d;
    };
    return Rule{std::move(rule_name), std::move(decide), tombstones};
}

// The rule itself, with each conflict's default resolver.
Rule pgmesh_rule() {
    return rule_with("pgmesh (default resolvers)", default_resolver);
}

const char *name(Change change) {
    switch (change) {
        case Change::kInsert:
            return "insert";
        case Change::kUpdate:
            return "update";
        case Change::kDelete:
            return "delete";
    }
    return "?";
}

const char *name(Outcome o) {
    switch (o) {
        case Outcome::kUnchanged:
            return "unchanged";
        case Outcome::kRemoteRow:
            return "remote row";
        case Outcome::kRemoteDelete:
            return "remote delete";
    }
    return "?";
}

std::string describe(const Held &h) {
    auto version = [&] {
        return "(t" + std::to_string(h.time) + ", node " + std::to_string(h.node) + ")";
    };
    switch (static_cast<KeyState::Kind>(h.kind)) {
        case KeyState::Kind::kNothing:
            return "nothing";
        case KeyState::Kind::kRow:
            return "row #" + std::to_string(h.content) + " " + version();
        case KeyState::Kind::kTombstone:
            return "tombstone " + version();
    }
    return "?";
}

std::string describe(const Op &op, int seq) {
    return "op #" + std::to_string(seq) + " (" + name(static_cast<Change>(op.change)) + " of key " +
           std::to_string(op.key) + " by node " + std::to_string(op.origin) + " at t" +
           std::to_string(op.time) + ")";
}

class Model {
public:
    Model(ModelConfig config, Rule rule) : config_(config), rule_(std::move(rule)) {
        if (config.nodes < 2 || config.nodes > kMaxNodes || config.keys < 1 ||
            config.keys > kMaxKeys || config.max_ops < 0 || config.max_ops > kMaxOps)
            throw std::invalid_argument("model larger than State holds: " + describe(config));
    }

    // Whether every op issued has been applied by every other node.
    bool quiescent(const State &s) const {
        std::array<int, kMaxNodes> issued_by = ops_by_origin(s);
        for (int origin = 0; origin < config_.nodes; ++origin)
            for (int receiver = 0; receiver < config_.nodes; ++receiver)
                if (receiver != origin && s.applied[origin][receiver] < issued_by[origin])
                    return false;
        return true;
    }

    // Every event enabled in s: any write its node's rows allow while fewer
    // than max_ops were issued, and the next op of every origin's stream to
    // every receiver that has not applied it yet.
    std::vector<Event> events(const State &s) const {
        std::vector<Event> out;
        if (s.issued < config_.max_ops) {
            for (int node = 0; node < config_.nodes; ++node)
                for (int key = 0; key < config_.keys; ++key) {
                    auto write = [&](Change c) {
                        out.push_back({Event::Kind::kWrite, uint8_t(node), 0, uint8_t(key), c});
                    };
                    if (s.held[node][key].kind == uint8_t(KeyState::Kind::kRow)) {
                        write(Change::kUpdate);
                        write(Change::kDelete);
                    } else {
                        write(Change::kInsert);
                    }
                }
        }
        std::array<int, kMaxNodes> issued_by = ops_by_origin(s);
        for (int origin = 0; origin < config_.nodes; ++origin)
            for (int receiver = 0; receiver < config_.nodes; ++receiver)
                if (receiver != origin && s.applied[origin][receiver] < issued_by[origin])
                    out.push_back({Event::Kind::kApply, uint8_t(receiver), uint8_t(origin)});
        return out;
    }

    // Runs e on s. Returns the rule's decision for an apply (nothing for a
    // write); with `text`, says what happened in words.
    std::optional<Decision> run(State &s, const Event &e, std::string *text) const {
        if (e.kind == Event::Kind::kWrite) {
            write(s, e, text);
            return std::nullopt;
        }
        return apply(s, e, text);
    }

    // The end of an execution: every node holds the same rows, the rows of
    // each key's newest op, and that op's version (its tombstone for a
    // delete). Returns what is wrong, if anything.
    std::optional<std::string> check_end(const State &s) const {
        for (int key = 0; key < config_.keys; ++key) {
            const Held &first = s.held[0][key];
            for (int node = 1; node < config_.nodes; ++node) {
                const Held &h = s.held[node][key];
                if (row_of(h) != row_of(first))
                    return "nodes diverge on key " + std::to_string(key) + ": node 1 holds " +
                           describe(first) + ", node " + std::to_string(node + 1) + " holds " +
                           describe(h);
            }
            Held expected = newest(s, key);
            if (row_of(first) != row_of(expected))
                return "every node holds " + describe(first) + " for key " + std::to_string(key) +
                       ", but its newest op leaves " + describe(expected);
            // The rows agree; versions (and tombstones) must too, or a later
            // change would be decided differently on different nodes.
            for (int node = 0; node < config_.nodes; ++node)
                if (s.held[node][key] != expected)
                    return "node " + std::to_string(node + 1) + " holds " +
                           describe(s.held[node][key]) + " for key " + std::to_string(key) +
                           ", its newest op leaves " + describe(expected);
        }
        return std::nullopt;
    }

    std::string describe_end(const State &s) const {
        std::string out;
        for (int key = 0; key < config_.keys; ++key) {
            out += "\n  key " + std::to_string(key) + ":";
            for (int node = 0; node < config_.nodes; ++node)
                out +=
                    " node " + std::to_string(node + 1) + " " + describe(s.held[node][key]) + ";";
            out += " newest op leaves " + describe(newest(s, key));
        }
        return out;
    }

private:
    std::array<int, kMaxNodes> ops_by_origin(const State &s) const {
        std::array<int, kMaxNodes> n{};
        for (int i = 0; i < s.issued; ++i) ++n[s.ops[i].origin - 1];
        return n;
    }

    Held deleted(uint8_t time, uint8_t node) const {
        if (!rule_.tombstones) return Held{};
        return Held{uint8_t(KeyState::Kind::kTombstone), time, node, 0};
    }

    uint8_t commit_time(const State &s, const Event &e) const {
        switch (config_.clock) {
            case Clock::kTicks:
                return uint8_t(s.issued + 1);
            case Clock::kSameTime:
                return kTieTime;
            case Clock::kSameTimeUnlessOlder: {
                const Held &replaced = s.held[e.node][e.key];
                uint8_t time = std::max(kTieTime, replaced.time);
                if (!newer({time, uint64_t(e.node + 1)}, {replaced.time, replaced.node})) ++time;
                return time;
            }
        }
        return 0;
    }

    // A local write: the origin's key takes the op's version directly (and
    // its content, for a row).
    void write(State &s, const Event &e, std::string *text) const {
        Op op{uint8_t(e.node + 1), e.key, uint8_t(e.change), commit_time(s, e)};
        int seq = s.issued + 1;
        s.ops[s.issued++] = op;
        s.held[e.node][e.key] =
            e.change == Change::kDelete
                ? deleted(op.time, op.origin)
                : Held{uint8_t(KeyState::Kind::kRow), op.time, op.origin, uint8_t(seq)};
        if (text) *text = "node " + std::to_string(op.origin) + " writes " + describe(op, seq);
    }

    // The receiver applies the next op of the origin's stream, as the rule
    // decides.
    Decision apply(State &s, const Event &e, std::string *text) const {
        int receiver = e.node, origin = e.origin;
        int skip = s.applied[origin][receiver]++;
        int seq = 0;
        for (int i = 0; i < s.issued; ++i)
            if (s.ops[i].origin == origin + 1 && skip-- == 0) {
                seq = i + 1;
                break;
            }
        const Op &op = s.ops[seq - 1];
        Held &held = s.held[receiver][op.key];
        KeyState local{static_cast<KeyState::Kind>(held.kind), {held.time, held.node}};
        Decision d =
            rule_.decide(static_cast<Change>(op.change), local, {op.time, op.origin}, op.origin);
        if (text) {
            *text = "node " + std::to_string(receiver + 1) + " applies " + describe(op, seq) +
                    " holding " + describe(held) + ": ";
            if (d.type)
                *text += std::string(name(*d.type)) + ", " + std::string(name(*d.resolver)) +
                         " -> " + std::string(name(*d.resolution)) + " -> ";
            else
                *text += "no conflict -> ";
            *text += d.resolution == Resolution::kError ? "apply stops" : name(d.outcome);
        }
        if (d.resolution == Resolution::kError) return d;
        switch (d.outcome) {
            case Outcome::kUnchanged:
                break;
            case Outcome::kRemoteRow:
                held = Held{uint8_t(KeyState::Kind::kRow), op.time, op.origin, uint8_t(seq)};
                break;
            case Outcome::kRemoteDelete:
                held = deleted(op.time, op.origin);
                break;
        }
        return d;
    }

    // What the rule promises for a key: the op with the greatest version
    // decides; between equal versions (only under Clock::kSameTime, where
    // one origin's ops all share a version) the later one in its origin's
    // commit order does, as its stream delivers it later.
    Held newest(const State &s, int key) const {
        int best = -1;
        for (int i = 0; i < s.issued; ++i) {
            const Op &op = s.ops[i];
            if (op.key != key) continue;
            if (best < 0 || !newer({s.ops[best].time, s.ops[best].origin}, {op.time, op.origin}))
                best = i;
        }
        if (best < 0) return Held{};
        const Op &op = s.ops[best];
        if (static_cast<Change>(op.change) == Change::kDelete) return deleted(op.time, op.origin);
        return Held{uint8_t(KeyState::Kind::kRow), op.time, op.origin, uint8_t(best + 1)};
    }

    // The row as a reader sees it: its content, or 0 for no row.
    static int row_of(const Held &h) {
        return h.kind == uint8_t(KeyState::Kind::kRow) ? h.content : 0;
    }

    ModelConfig config_;
    Rule rule_;
};

// --- The search --------------------------------------------------------------

struct SearchResult {
    uint64_t states = 0;       // distinct states reached
    uint64_t ends = 0;         // of them quiescent: an execution may end there
    uint64_t transitions = 0;  // distinct (state, event) pairs
    Count executions = 0;      // distinct event sequences from the start to an end
    uint64_t histories = 0;    // distinct sequences of ops issued (origin, key, change, time)
    // How often each conflict type was met, over the transitions; the last
    // slot counts changes that met none.
    std::array<uint64_t, kTypeCount + 1> conflicts{};
    std::optional<std::string> failure;  // the first counterexample, one of the shortest
    double seconds = 0;
};

// Every execution of the model, with the state graph memoized. Every path
// to a state has the same length (one event per op issued or applied), so
// the search goes breadth first, one length at a time: it reaches exactly
// the states a memoized depth-first search reaches, counts the paths into
// each state from the previous length (a topological order), and the first
// failing state it meets ends one of the shortest counterexamples. It stops
// there.
SearchResult explore(const ModelConfig &config, const Rule &rule) {
    auto started = std::chrono::steady_clock::now();
    Model model(config, rule);
    SearchResult r;

    // How each state was first reached, to spell out a counterexample.
    struct Reached {
        uint32_t from;
        Event via;
    };
    std::vector<Reached> reached{{0, {}}};  // state 0: the start
    auto counterexample = [&](uint32_t id, const std::string &what,
                              const std::optional<Event> &last) {
        std::vector<Event> path;
        if (last) path.push_back(*last);
        for (; id != 0; id = reached[id].from) path.push_back(reached[id].via);
        std::reverse(path.begin(), path.end());
        State s;
        std::string text = what + "\n  " + describe(config) + ", rule " + rule.name + ", after " +
                           std::to_string(path.size()) + " events:";
        for (size_t i = 0; i < path.size(); ++i) {
            std::string step;
            model.run(s, path[i], &step);
            text += "\n  " + std::to_string(i + 1) + ". " + step;
        }
        return text + model.describe_end(s);
    };

    struct Layer {
        std::vector<State> states;
        std::vector<Count> paths;  // from the start into each state
        std::vector<uint32_t> ids;
    };
    Layer current;
    current.states.push_back(State{});
    current.paths.push_back(1);
    current.ids.push_back(0);
    std::unordered_set<std::string> histories;
    while (!current.states.empty()) {
        Layer next;
        std::unordered_map<State, uint32_t, StateHash> index;  // state -> its place in next
        index.reserve(current.states.size() * 2);
        for (size_t i = 0; i < current.states.size(); ++i) {
            const State &s = current.states[i];
            ++r.states;
            if (model.quiescent(s)) {
                ++r.ends;
                r.executions += current.paths[i];
                histories.emplace(reinterpret_cast<const char *>(s.ops.data()),
                                  s.issued * sizeof(Op));
                if (std::optional<std::string> wrong = model.check_end(s)) {
                    r.failure = counterexample(current.ids[i], *wrong, std::nullopt);
                    break;
                }
            }
            for (const Event &e : model.events(s)) {
                State child = s;
                std::optional<Decision> d = model.run(child, e, nullptr);
                ++r.transitions;
                if (d) {
                    ++r.conflicts[d->type ? static_cast<size_t>(*d->type) : kTypeCount];
                    if (d->resolution == Resolution::kError) {
                        r.failure = counterexample(current.ids[i], "apply stops with an error", e);
                        break;
                    }
                }
                auto [at, fresh] = index.try_emplace(child, uint32_t(next.states.size()));
                if (fresh) {
                    next.states.push_back(child);
                    next.paths.push_back(current.paths[i]);
                    next.ids.push_back(uint32_t(reached.size()));
                    reached.push_back({current.ids[i], e});
                } else {
                    next.paths[at->second] += current.paths[i];
                }
            }
            if (r.failure) break;
        }
        if (r.failure) break;
        current = std::move(next);
    }
    r.histories = histories.size();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return r;
}

// Prints the counts (for people to quote) and records them in the test's
// XML report.
void report(const ModelConfig &config, const Rule &rule, const SearchResult &r) {
    std::string conflicts;
    for (int t = 0; t <= kTypeCount; ++t) {
        if (r.conflicts[t] == 0) continue;
        conflicts += conflicts.empty() ? "" : ", ";
        conflicts += t == kTypeCount ? std::string_view("none") : name(Type(t));
        conflicts += ' ';
        conflicts += std::to_string(r.conflicts[t]);
    }
    std::printf(
        "[ model    ] %s, rule %s: %llu states (%llu ends), %llu transitions, %s executions, "
        "%llu histories, %.2f s%s\n[ model    ]   conflicts met: %s\n",
        describe(config).c_str(), rule.name.c_str(), (unsigned long long)r.states,
        (unsigned long long)r.ends, (unsigned long long)r.transitions,
        to_string(r.executions).c_str(), (unsigned long long)r.histories, r.seconds,
        r.failure ? " (stopped at a failure)" : "", conflicts.c_str());
    std::fflush(stdout);
    ::testing::Test::RecordProperty("states", std::to_string(r.states));
    ::testing::Test::RecordProperty("ends", std::to_string(r.ends));
    ::testing::Test::RecordProperty("executions", to_string(r.executions));
    ::testing::Test::RecordProperty("histories", std::to_string(r.histories));
}

SearchResult expect_converges(const ModelConfig &config) {
    Rule rule = pgmesh_rule();
    SearchResult r = explore(config, rule);
    report(config, rule, r);
    if (r.failure) ADD_FAILURE() << *r.failure;
    EXPECT_GT(r.ends, 1u);
    return r;
}

// With three nodes a change can arrive before the change it was based on,
// so that every conflict the rule knows for these changes shows up.
void expect_every_conflict_met(const SearchResult &r) {
    for (Type t : {Type::kInsertExists, Type::kUpdateOriginDiffers, Type::kUpdateMissing,
                   Type::kDeleteOriginDiffers, Type::kDeleteMissing, Type::kInsertDeleted,
                   Type::kUpdateDeleted})
        EXPECT_GT(r.conflicts[static_cast<size_t>(t)], 0u) << name(t) << " never met";
    EXPECT_GT(r.conflicts[kTypeCount], 0u) << "no change ever applied without a conflict";
}

// A broken rule: the checker must find the divergence. Prints the
// counterexample (one of the shortest) instead of failing.
void expect_caught(const ModelConfig &config, const Rule &broken) {
    SearchResult r = explore(config, broken);
    report(config, broken, r);
    ASSERT_TRUE(r.failure.has_value()) << "the checker missed the broken rule " << broken.name;
    std::printf("[ caught   ] %s\n", r.failure->c_str());
    std::fflush(stdout);
}

// --- The checker itself --------------------------------------------------------

// Two nodes, one write: the start; node 1 (or 2) inserted; the other node
// applied it. Executions: the empty one and the two of "insert, apply".
TEST(ConvergenceModel, SmallestModelIsCountedByHand) {
    ModelConfig config{.nodes = 2, .keys = 1, .max_ops = 1};
    SearchResult r = explore(config, pgmesh_rule());
    EXPECT_FALSE(r.failure);
    EXPECT_EQ(r.states, 5u);
    EXPECT_EQ(r.ends, 3u);
    EXPECT_EQ(r.transitions, 4u);
    EXPECT_EQ(to_string(r.executions), "3");
    EXPECT_EQ(r.histories, 3u);
}

// A plain depth-first walk of every execution, one by one, without
// memoization: it must count the same executions and histories and find
// every end state correct, which checks the memoized search against the
// definition on configurations small enough to walk.
struct Walk {
    const Model &model;
    uint64_t executions = 0;
    std::unordered_set<std::string> histories;
    std::vector<std::string> failures;

    explicit Walk(const Model &m) : model(m) {}

    void from(const State &s) {
        if (model.quiescent(s)) {
            ++executions;
            histories.emplace(reinterpret_cast<const char *>(s.ops.data()), s.issued * sizeof(Op));
            if (auto wrong = model.check_end(s); wrong && failures.size() < 3)
                failures.push_back(*wrong);
        }
        for (const Event &e : model.events(s)) {
            State child = s;
            model.run(child, e, nullptr);
            from(child);
        }
    }
};

TEST(ConvergenceModel, MemoizedCountsMatchAWalkOfEveryExecution) {
    for (ModelConfig config :
         {ModelConfig{.nodes = 2, .keys = 1, .max_ops = 3},
          ModelConfig{.nodes = 3, .keys = 1, .max_ops = 3},
          ModelConfig{.nodes = 2, .keys = 2, .max_ops = 3},
          ModelConfig{.nodes = 3, .keys = 1, .max_ops = 3, .clock = Clock::kSameTimeUnlessOlder}}) {
        Model model(config, pgmesh_rule());
        Walk walk{model};
        walk.from(State{});
        SearchResult r = explore(config, pgmesh_rule());
        EXPECT_FALSE(r.failure) << describe(config);
        EXPECT_TRUE(walk.failures.empty()) << describe(config) << ": " << walk.failures.front();
        EXPECT_EQ(to_string(r.executions), std::to_string(walk.executions)) << describe(config);
        EXPECT_EQ(r.histories, walk.histories.size()) << describe(config);
    }
}

// --- The rule converges ----------------------------------------------------------

TEST(Convergence, TwoNodesOneKeyFourOps) {
    expect_converges({.nodes = 2, .keys = 1, .max_ops = 4});
}

TEST(Convergence, ThreeNodesOneKeyFourOps) {
    expect_every_conflict_met(expect_converges({.nodes = 3, .keys = 1, .max_ops = 4}));
}

TEST(Convergence, ThreeNodesTwoKeysFourOps) {
    expect_every_conflict_met(expect_converges({.nodes = 3, .keys = 2, .max_ops = 4}));
}

TEST(Convergence, ThreeNodesOneKeyFiveOps) {
    expect_every_conflict_met(expect_converges({.nodes = 3, .keys = 1, .max_ops = 5}));
}

// Concurrent writes all at the same commit time: only the node id orders
// them (newer()'s tie break), on every node alike.
TEST(ConvergenceAllTies, ThreeNodesOneKeyFourOps) {
    expect_every_conflict_met(expect_converges(
        {.nodes = 3, .keys = 1, .max_ops = 4, .clock = Clock::kSameTimeUnlessOlder}));
}

// Literally every write at the same time, also one that replaces a version
// it has applied: node 1 overwrites node 2's row with (t, node 1), older
// than the (t, node 2) it replaced. Node 1 keeps its own write (local writes
// are not decided by the rule), node 2 keeps its newer version: no rule
// about remote changes can fix that. The rule needs every write to be newer
// than what it replaces at its origin (Clock::kSameTimeUnlessOlder above);
// commit timestamps from clocks that lag behind each other break it the
// same way (docs/conflicts.md, "Clock skew"). This test pins that
// precondition down.
TEST(ConvergenceAllTies, AWriteOlderThanTheVersionItReplacesDiverges) {
    ModelConfig config{.nodes = 3, .keys = 1, .max_ops = 4, .clock = Clock::kSameTime};
    SearchResult r = explore(config, pgmesh_rule());
    report(config, pgmesh_rule(), r);
    ASSERT_TRUE(r.failure.has_value());
    std::printf("[ diverges ] %s\n", r.failure->c_str());
    // The shortest: node 2 inserts, node 1 applies it and updates the row,
    // and the updates and insert reach the others (node 3 too: 6 events).
    EXPECT_NE(r.failure->find("after 6 events"), std::string::npos) << *r.failure;
}

// --- Broken rules are caught ---------------------------------------------------

// The rule before tombstones compared deletes: a remote delete always won
// over the local row.
TEST(ConvergenceMutation, RemoteDeleteAlwaysWinsIsCaught) {
    expect_caught(
        {.nodes = 2, .keys = 1, .max_ops = 4}, rule_with("remote delete always wins", [](Type t) {
            return t == Type::kDeleteOriginDiffers ? Resolver::kApplyRemote : default_resolver(t);
        }));
}

TEST(ConvergenceMutation, UpdateSkippedAtATombstoneIsCaught) {
    expect_caught({.nodes = 2, .keys = 1, .max_ops = 4},
                  rule_with("update at a tombstone skipped", [](Type t) {
                      return t == Type::kUpdateDeleted ? Resolver::kKeepLocal : default_resolver(t);
                  }));
}

// The whole rule before tombstones (docs/conflicts.md, known limits): no
// tombstones, a remote delete wins, an update or delete that finds no row
// is skipped.
TEST(ConvergenceMutation, RuleWithoutTombstonesIsCaught) {
    expect_caught({.nodes = 3, .keys = 1, .max_ops = 4},
                  rule_with(
                      "no tombstones, delete wins, missing rows skipped",
                      [](Type t) {
                          switch (t) {
                              case Type::kDeleteOriginDiffers:
                                  return Resolver::kApplyRemote;
                              case Type::kUpdateMissing:
                              case Type::kDeleteMissing:
                                  return Resolver::kKeepLocal;
                              default:
                                  return default_resolver(t);
                          }
                      },
                      /*tombstones=*/false));
}

// Versions compared by commit time alone, the local one kept on a tie: only
// the all-ties clock can catch it.
TEST(ConvergenceMutation, TiesNotBrokenByNodeIdAreCaught) {
    Rule broken{"ties keep the local version",
                [](Change change, const KeyState &local, const Version &remote, uint64_t peer) {
                    Decision d;
                    d.type = classify(change, local, peer);
                    if (d.type) {
                        d.resolver = default_resolver(*d.type);
                        d.resolution = resolve(*d.type, *d.resolver, {local.version.commit_time, 0},
                                               {remote.commit_time, 0});
                    }
                    d.outcome = outcome(change, d.resolution);
                    return d;
                }};
    expect_caught({.nodes = 2, .keys = 1, .max_ops = 4, .clock = Clock::kSameTimeUnlessOlder},
                  broken);
}

}  // namespace
}  // namespace pgmesh::conflict
