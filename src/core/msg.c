/* msg.c -- validation and names shared by every user of struct shoal_msg. */
#include "core/msg.h"

#include <string.h>

bool shoal_name_valid(const char *name)
{
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9');
        if (!alnum && (n == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return n >= 1 && n < SHOAL_NAME_MAX;
}

static const char *const status_names[SHOAL_STATUS_COUNT] = {
    "alive", "suspect", "dead", "left"};

const char *shoal_status_name(int status)
{
    if (status < 0 || status >= SHOAL_STATUS_COUNT)
        return "?";
    return status_names[status];
}

int shoal_status_parse(const char *s)
{
    for (int i = 0; i < SHOAL_STATUS_COUNT; i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return -1;
}
