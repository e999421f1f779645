#include "layout.hpp"

#include "postgres_headers.hpp"

namespace pgmesh {

std::string binary_layout() {
#ifdef WORDS_BIGENDIAN
    const char *endian = "be";
#else
    const char *endian = "le";
#endif
    return "pg" + std::to_string(PG_VERSION_NUM / 10000) + ",datum" + std::to_string(SIZEOF_DATUM) +
           ",f8byval" + std::to_string(FLOAT8PASSBYVAL ? 1 : 0) + ",align" +
           std::to_string(MAXIMUM_ALIGNOF) + "," + endian;
}

}  // namespace pgmesh
