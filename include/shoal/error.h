/* shoal/error.h -- the one error convention of shoal.
 *
 * Functions return 0 on success or a negative SHOAL_E* code. The codes come
 * from one X-macro table so that the enum and shoal_strerror() never drift.
 */
#ifndef SHOAL_ERROR_H
#define SHOAL_ERROR_H

#define SHOAL_ERRNO_MAP(X)                                                     \
    X(EINVAL, "invalid argument")                                              \
    X(ENOMEM, "out of memory")                                                 \
    X(ERANGE, "value out of range")                                            \
    X(ETOOBIG, "message too large")                                            \
    X(ETRUNC, "message truncated")                                             \
    X(EDECODE, "message cannot be decoded")                                    \
    X(EBADSIG, "bad signature")                                                \
    X(ENOTENDORSED, "sender not endorsed by the cluster key")                  \
    X(EREPLAY, "replayed message")                                             \
    X(EBADHDR, "unsigned or unknown envelope")                                 \
    X(EIO, "input/output error")                                               \
    X(ENOENT, "not found")                                                     \
    X(EEXIST, "already exists")                                                \
    X(ECONN, "cannot connect")                                                 \
    X(ESTATE, "operation not allowed in this state")                          \
    X(EPERM, "not permitted")

enum shoal_err {
    SHOAL_OK = 0,
#define SHOAL_ERR_ENUM(name, text) SHOAL_##name,
    SHOAL_ERR_FIRST_ = -1000,
    SHOAL_ERRNO_MAP(SHOAL_ERR_ENUM)
#undef SHOAL_ERR_ENUM
    SHOAL_ERR_LAST_
};

/* Returns a static description of a SHOAL_E* code (or "success"/"unknown"). */
const char *shoal_strerror(int err);

#if defined(__GNUC__)
#define SHOAL_MUST_CHECK __attribute__((warn_unused_result))
#else
#define SHOAL_MUST_CHECK
#endif

#endif
