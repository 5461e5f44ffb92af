/* error.c -- shoal_strerror() from the X-macro table in shoal/error.h. */
#include "shoal/error.h"

const char *shoal_strerror(int err)
{
    switch (err) {
    case SHOAL_OK:
        return "success";
#define SHOAL_ERR_CASE(name, text)                                             \
    case SHOAL_##name:                                                         \
        return text;
        SHOAL_ERRNO_MAP(SHOAL_ERR_CASE)
#undef SHOAL_ERR_CASE
    default:
        return "unknown error";
    }
}
