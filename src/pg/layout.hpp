// Facts about how this server lays out values, compared between nodes at
// START_REPLICATION so that binary transfer (send/receive functions) is used
// only where both sides agree.
#pragma once

#include <string>

namespace pgmesh {

std::string binary_layout();

}  // namespace pgmesh
