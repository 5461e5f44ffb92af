/* ui_assets.h -- the web UI's files, embedded at build time.
 *
 * cmake/embed_ui.cmake generates the table (build/gen/ui_assets.c) from
 * src/io/ui/: index.html, and app.js / app.css under names that carry a hash
 * of their content, so that those two can be cached as immutable.
 */
#ifndef SHOAL_IO_UI_ASSETS_H
#define SHOAL_IO_UI_ASSETS_H

#include <stdbool.h>
#include <stddef.h>

struct shoal_ui_asset {
    const char *name;          /* "index.html", "app.0123456789abcdef.js", ... */
    const char *content_type;  /* with charset */
    const char *etag;          /* quoted, as sent */
    bool immutable;            /* the name changes with the content */
    const unsigned char *data; /* len bytes, then a NUL */
    size_t len;
};

extern const struct shoal_ui_asset shoal_ui_assets[];
extern const size_t shoal_ui_n_assets;

#endif
