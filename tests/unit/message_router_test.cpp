#include "message_router.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pgmesh::messages {
namespace {

proto::Message message(std::string prefix, std::string content = "x") {
    return proto::Message{true, std::move(prefix), std::move(content)};
}

TEST(MessageRouter, EachPrefixReachesItsOwnHandler) {
    Router router;
    std::vector<std::string> ddl, lock;
    router.add("pgmesh_ddl", [&](const proto::Message &m) { ddl.push_back(m.content); });
    router.add("pgmesh_lock", [&](const proto::Message &m) { lock.push_back(m.content); });
    EXPECT_TRUE(router.dispatch(message("pgmesh_lock", "acquire")));
    EXPECT_TRUE(router.dispatch(message("pgmesh_ddl", "CREATE TABLE t ()")));
    EXPECT_TRUE(router.dispatch(message("pgmesh_lock", "release")));
    EXPECT_EQ(ddl, std::vector<std::string>{"CREATE TABLE t ()"});
    EXPECT_EQ(lock, (std::vector<std::string>{"acquire", "release"}));
}

TEST(MessageRouter, AMessageNoHandlerTakesIsNotHandled) {
    Router router;
    int calls = 0;
    router.add("pgmesh_ddl", [&](const proto::Message &) { calls++; });
    EXPECT_FALSE(router.dispatch(message("pgmesh_ddl2")));  // prefixes match exactly
    EXPECT_FALSE(router.dispatch(message("pgmesh")));
    EXPECT_FALSE(Router().dispatch(message("pgmesh_ddl")));
    EXPECT_EQ(calls, 0);
}

TEST(MessageRouter, RefusesForeignTakenAndEmptyRegistrations) {
    Router router;
    EXPECT_THROW(router.add("bdr_ddl", [](const proto::Message &) {}), std::invalid_argument);
    EXPECT_THROW(router.add("pgmesh_x", Router::Handler{}), std::invalid_argument);
    router.add("pgmesh_x", [](const proto::Message &) {});
    EXPECT_THROW(router.add("pgmesh_x", [](const proto::Message &) {}), std::invalid_argument);
}

}  // namespace
}  // namespace pgmesh::messages
