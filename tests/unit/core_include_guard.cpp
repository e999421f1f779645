// Must not compile: a core file that sees a PostgreSQL header stops at
// src/core/cpp_only.hpp. The test core_refuses_postgres_headers
// (tests/unit/CMakeLists.txt) compiles this file and expects that error.
#include "postgres.h"

#include "cpp_only.hpp"
