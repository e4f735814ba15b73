/*
 * cmd_images: `images` ls, inspect, push and rm. push uploads each file as
 * a blob in 1 MiB chunks (POST/PATCH/PUT /v1/blobs/uploads, the SHA-256
 * computed while reading), then registers the image (POST /v1/images).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cmd_priv.h"
#include "digest.h"
#include "http.h"
#include "mem.h"

#define PUSH_CHUNK (1024 * 1024)

enum {
    OPT_KERNEL = 1,
    OPT_INITRD,
    OPT_DISK,
    OPT_CMDLINE,
};

struct push_opts {
    const char *kernel, *initrd, *disk, *cmdline;
};

static int
push_opt(struct cli_ctx *ctx, void *st, int id, const char *val)
{
    struct push_opts *o = st;
    (void)ctx;
    switch (id) {
    case OPT_KERNEL:
        o->kernel = val;
        break;
    case OPT_INITRD:
        o->initrd = val;
        break;
    case OPT_DISK:
        o->disk = val;
        break;
    case OPT_CMDLINE:
        o->cmdline = val;
        break;
    }
    return 0;
}

/* One API call with a binary body; 0 and *out on 2xx, else prints. */
static int
api_bin(struct cli_ctx *ctx, const char *method, const char *path,
        const void *data, size_t len, const char *const *headers,
        json_t **out)
{
    struct cli_http_resp r;
    int rc = CLI_EXIT_FAIL;

    *out = NULL;
    if (cli_http_request_bin(ctx->http, method, path, data, len,
                             "application/octet-stream", headers, &r) < 0) {
        cli_fail(ctx, "%s", r.error);
        cli_http_resp_clear(&r);
        return CLI_EXIT_FAIL;
    }
    if (r.status >= 200 && r.status < 300) {
        *out = json_loadb(r.body, r.len, 0, NULL);
        rc = *out ? 0 : cli_fail(ctx, "%s %s: the answer is not JSON",
                                 method, path);
    } else {
        cli_fail_answer(ctx, r.status, r.body, r.len, method, path);
    }
    cli_http_resp_clear(&r);
    return rc;
}

/* Uploads file as a blob; digest gets "sha256:<hex>". */
static int
push_blob(struct cli_ctx *ctx, const char *file, char *digest)
{
    json_t *ans = NULL;
    char *buf = NULL, *path = NULL, *fin = NULL;
    unsigned long long off = 0;
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    int fd = open(file, O_RDONLY | O_CLOEXEC), rc = CLI_EXIT_FAIL;

    if (fd < 0 || sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        rc = cli_fail(ctx, "images push: cannot read %s: %s", file,
                      strerror(errno));
        goto out;
    }
    if (cli_connect(ctx) != 0 ||
        cli_api(ctx, "POST", "/v1/blobs/uploads", NULL, &ans, NULL) != 0)
        goto out;
    path = xasprintf("/v1/blobs/uploads/%s", cli_jstr(ans, "id"));
    json_decref(ans);
    ans = NULL;
    buf = xmalloc(PUSH_CHUNK);
    for (;;) {
        ssize_t n = read(fd, buf, PUSH_CHUNK);
        char hdr[64];
        const char *headers[2] = {hdr, NULL};
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = cli_fail(ctx, "images push: cannot read %s: %s", file,
                          strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(sha, buf, (size_t)n);
        snprintf(hdr, sizeof(hdr), "Upload-Offset: %llu", off);
        if (api_bin(ctx, "PATCH", path, buf, (size_t)n, headers, &ans) != 0)
            goto out;
        json_decref(ans);
        ans = NULL;
        off += (unsigned long long)n;
        if (ctx->progress)
            fprintf(ctx->err, "\r%s: %llu bytes", file, off);
    }
    if (ctx->progress)
        fprintf(ctx->err, "\n");
    if (digest_final(sha, digest) < 0) {
        rc = cli_fail(ctx, "images push: cannot compute the SHA-256 of %s",
                      file);
        goto out;
    }
    fin = xasprintf("%s?digest=%s", path, digest);
    rc = cli_api(ctx, "PUT", fin, NULL, &ans, NULL);
out:
    json_decref(ans);
    EVP_MD_CTX_free(sha);
    if (fd >= 0)
        close(fd);
    free(buf);
    free(path);
    free(fin);
    return rc;
}

static int
images_push(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct arg_spec specs[] = {
        {"kernel", 0, true, OPT_KERNEL},
        {"initrd", 0, true, OPT_INITRD},
        {"disk", 0, true, OPT_DISK},
        {"cmdline", 0, true, OPT_CMDLINE},
        {NULL, 0, false, 0},
    };
    struct push_opts o = {0};
    char **pos = NULL;
    int npos, rc;
    json_t *body = NULL, *ans = NULL;

    rc = cli_parse(ctx, "images", specs, 0, argc, argv, push_opt, &o, &pos,
                   &npos);
    if (rc == 0)
        rc = cli_want_args(ctx, "images", pos, npos, 1, 1,
                           "push needs exactly one NAME:TAG");
    if (rc != 0)
        goto out;
    if ((o.kernel == NULL) == (o.disk == NULL)) {
        rc = cli_usage(
            ctx, "images",
            "push needs --kernel FILE (with optional --initrd) or --disk FILE");
        goto out;
    }
    const char *files[] = {o.kernel, o.initrd, o.disk};
    for (size_t i = 0; i < 3; i++)
        if (files[i] != NULL && access(files[i], R_OK) != 0) {
            rc = cli_fail(ctx, "images push: cannot read %s", files[i]);
            goto out;
        }
    {
        const char *ref = pos[0], *colon = strrchr(ref, ':');
        char *name = colon ? xstrndup(ref, (size_t)(colon - ref)) : xstrdup(ref);
        char digests[3][72];
        static const char *const keys[] = {"kernel", "initrd", "disk"};

        body = json_pack("{s:s,s:s,s:s}", "name", name, "tag",
                         colon ? colon + 1 : "latest", "kind",
                         o.kernel ? "kernel" : "disk");
        free(name);
        for (size_t i = 0; i < 3; i++) {
            if (files[i] == NULL)
                continue;
            rc = push_blob(ctx, files[i], digests[i]);
            if (rc != 0)
                goto out;
            json_object_set_new(body, keys[i], json_string(digests[i]));
        }
    }
    if (o.cmdline != NULL)
        json_object_set_new(body, "cmdline", json_string(o.cmdline));
    rc = cli_api(ctx, "POST", "/v1/images", body, &ans, NULL);
    if (rc == 0) {
        if (ctx->output == FMT_JSON)
            cli_print_json(ctx, ans);
        else
            cli_print_line(ctx, pos[0]);
    }
out:
    json_decref(body);
    json_decref(ans);
    free(pos);
    return rc;
}

int
cmd_images(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct cli_list list = {"images", "/v1/images", NULL,
                                         fmt_images};
    static const struct cli_each each = {.cmd = "images",
                                         .collection = "images",
                                         .need =
                                             "an image REF or ID is required"};
    static const struct cli_action actions[] = {
        {"rm", "delete", "DELETE", NULL},
        {NULL, NULL, NULL, NULL},
    };
    static const struct cli_resource r = {
        &list, &each, actions, "push", images_push, "ls, inspect, push, rm"};

    return cli_resource_run(ctx, &r, argc, argv);
}
