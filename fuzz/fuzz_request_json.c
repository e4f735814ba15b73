/*
 * fuzz_request_json: a REST request body through the path the controller
 * gives it (controller/http.c http_body_json, then the handlers): the
 * nesting check, jansson with duplicate keys refused, then every body
 * validator. Beyond the sanitizers it checks what callers rely on: a
 * refusal fills a NUL-terminated field and a non-empty message, and an
 * accepted body comes back as an object that serialises.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_refusal(const struct verr *e)
{
    if (memchr(e->field, '\0', sizeof(e->field)) == NULL ||
        memchr(e->message, '\0', sizeof(e->message)) == NULL ||
        e->message[0] == '\0')
        abort();
}

/* Takes ownership of out. */
static void
check_result(json_t *out, const struct verr *e)
{
    char *s;

    if (out == NULL) {
        check_refusal(e);
        return;
    }
    if (!json_is_object(out))
        abort();
    /* The handlers store and answer with the normalised object. */
    s = json_dumps(out, JSON_COMPACT);
    if (s == NULL)
        abort();
    free(s);
    json_decref(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const char *signal = NULL;
    int grace = 0;
    json_error_t jerr;
    struct verr e;
    json_t *in;

    /* An empty body reaches validate_kill as NULL: TERM. */
    if (size == 0) {
        if (validate_kill(NULL, &signal, &grace, &e) != 0 || signal == NULL ||
            grace != 0)
            abort();
        return 0;
    }
    if (validate_json_depth(buf, size, VALIDATE_JSON_MAX_DEPTH) < 0)
        return 0;
    in = json_loadb(buf, size, JSON_REJECT_DUPLICATES, &jerr);
    if (in == NULL)
        return 0;

    check_result(validate_service_create(in, &e), &e);
    check_result(validate_service_patch(in, &e), &e);
    check_result(validate_instance_create(in, &e), &e);
    check_result(validate_image_create(in, &e), &e);
    signal = NULL;
    if (validate_kill(in, &signal, &grace, &e) == 0) {
        if (signal == NULL ||
            (strcmp(signal, "TERM") != 0 && strcmp(signal, "KILL") != 0) ||
            (grace != 0 && (strcmp(signal, "TERM") != 0 ||
                            grace < VALIDATE_GRACE_MIN ||
                            grace > VALIDATE_GRACE_MAX)))
            abort();
    } else {
        check_refusal(&e);
    }
    /* The validators borrow: the input must be intact and ours to free. */
    if (in->refcount != 1)
        abort();
    json_decref(in);
    return 0;
}
