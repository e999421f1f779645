// Included last by every source file of the core: the core is pure C++ and
// must never see PostgreSQL's headers, whose macros (elog, PG_TRY, Min, ...)
// and longjmp-based error handling do not mix with it. A core file that pulls
// one in, directly or through another header, fails to compile here.
#pragma once

#if defined(POSTGRES_H) || defined(PG_VERSION_NUM) || defined(C_H) || defined(POSTGRES_FE_H)
#error "pgmesh core: a PostgreSQL header was included into a pure C++ core file"
#endif
