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
    router.dispatch(message("pgmesh_lock", "acquire"));
    router.dispatch(message("pgmesh_ddl", "CREATE TABLE t ()"));
    router.dispatch(message("pgmesh_lock", "release"));
    EXPECT_EQ(ddl, std::vector<std::string>{"CREATE TABLE t ()"});
    EXPECT_EQ(lock, (std::vector<std::string>{"acquire", "release"}));
}

TEST(MessageRouter, AMessageNoHandlerTakesIsAnError) {
    Router router;
    router.add("pgmesh_ddl", [](const proto::Message &) {});
    try {
        router.dispatch(message("pgmesh_ddl2"));  // prefixes match exactly
        FAIL() << "dispatched";
    } catch (const UnknownMessage &e) {
        EXPECT_EQ(e.prefix(), "pgmesh_ddl2");
        EXPECT_NE(std::string(e.what()).find("\"pgmesh_ddl2\""), std::string::npos);
    }
    EXPECT_THROW(Router().dispatch(message("pgmesh")), UnknownMessage);
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
