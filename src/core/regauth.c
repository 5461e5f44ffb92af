/* regauth.c -- the registry's authority rules (see regauth.h). */
#include "core/regauth.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shoal/error.h"

const char *shoal_reg_refuse_name(int reason)
{
    static const char *const names[] = {
#define SHOAL_REG_REFUSE_NAME(n, s) s,
        SHOAL_REG_REFUSE_MAP(SHOAL_REG_REFUSE_NAME)
#undef SHOAL_REG_REFUSE_NAME
    };
    if (reason < 0 || reason >= SHOAL_REG_REFUSE_COUNT)
        return "unknown";
    return names[reason];
}

void shoal_regauth_caps_defaults(struct shoal_registry_config *c)
{
    if (!c->max_owner_instances)
        c->max_owner_instances = SHOAL_REGAUTH_OWNER_INSTANCES;
    if (!c->max_owner_bytes)
        c->max_owner_bytes = SHOAL_REGAUTH_OWNER_BYTES;
    if (!c->max_instances)
        c->max_instances = SHOAL_REGAUTH_INSTANCES;
    if (!c->max_bytes)
        c->max_bytes = SHOAL_REGAUTH_BYTES;
}

int shoal_regauth_speaker(const struct shoal_principals *t, const struct shoal_instance *ev,
                          const uint8_t **pk)
{
    const struct shoal_principal *p = shoal_principals_get(t, ev->owner);
    if (!p)
        return SHOAL_REG_REFUSE_UNKNOWN_OWNER;
    /* A tombstone names no service: it can only end what the owner held,
     * which was in scope when it was applied. */
    if (!ev->deleted && !shoal_principal_allows_service(p, ev->service ? ev->service : ""))
        return SHOAL_REG_REFUSE_OUT_OF_SCOPE;
    if (!ev->has_sig)
        return SHOAL_REG_REFUSE_UNSIGNED;
    *pk = p->pk;
    return -1;
}

int shoal_regauth_caps_check(const struct shoal_registry_config *c,
                             const struct shoal_regauth_held *h, uint64_t new_cost)
{
    if (h->is_new && h->owner_count >= c->max_owner_instances)
        return SHOAL_REG_REFUSE_OWNER_INSTANCES;
    if (h->is_new && h->total_count >= c->max_instances)
        return SHOAL_REG_REFUSE_TOTAL_INSTANCES;
    uint64_t old = h->is_new ? 0 : h->old_cost;
    if (new_cost > old) {
        uint64_t grow = new_cost - old;
        if (h->owner_bytes + grow > c->max_owner_bytes)
            return SHOAL_REG_REFUSE_OWNER_BYTES;
        if (h->total_bytes + grow > c->max_bytes)
            return SHOAL_REG_REFUSE_TOTAL_BYTES;
    }
    return -1;
}

int shoal_regauth_own_scope(const struct shoal_principals *t, const char *self,
                            const char *service, char *why, size_t cap)
{
    const struct shoal_principal *p = t ? shoal_principals_get(t, self) : NULL;
    if (!p || shoal_principal_allows_service(p, service))
        return 0;
    size_t n = (size_t)snprintf(why, cap, "service \"%s\" is outside this node's certificate "
                                          "scope (", service);
    for (size_t i = 0; i < p->n_scopes && n < cap; i++)
        n += (size_t)snprintf(why + n, cap - n, "%s%s", i ? "," : "", p->scopes[i]);
    if (n < cap)
        snprintf(why + n, cap - n, ")");
    return SHOAL_EPERM;
}

void shoal_regauth_cap_why(int reason, const struct shoal_registry_config *c, char *why,
                           size_t cap)
{
    switch (reason) {
    case SHOAL_REG_REFUSE_OWNER_INSTANCES:
        snprintf(why, cap, "this node already holds %" PRIu32 " instances and tombstones of its "
                 "own, the most one owner may (--max-owner-instances)", c->max_owner_instances);
        break;
    case SHOAL_REG_REFUSE_OWNER_BYTES:
        snprintf(why, cap, "this node's instances would exceed %" PRIu64 " bytes, the most one "
                 "owner may (--max-owner-bytes)", c->max_owner_bytes);
        break;
    case SHOAL_REG_REFUSE_TOTAL_INSTANCES:
        snprintf(why, cap, "the registry already holds %" PRIu32 " instances and tombstones, "
                 "its cap (--max-instances)", c->max_instances);
        break;
    default:
        snprintf(why, cap, "the registry would exceed %" PRIu64 " bytes, its cap (--max-bytes)",
                 c->max_bytes);
        break;
    }
}
