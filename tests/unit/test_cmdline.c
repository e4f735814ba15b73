/*
 * common/cmdline.c: args quoted onto a kernel command line come back as
 * the same args when the kernel splits the line. The splitter below is the
 * kernel's lib/cmdline.c next_arg() rule (a word that starts with '"' runs
 * to the next '"'; in key="v" the quotes around v go) and init/main.c's
 * repair_env_string(), which puts key=value back together for init.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmdline.h"
#include "mem.h"

/* One word of args (modified in place), as init receives it; the rest. */
static char *
kernel_next_arg(char *args, char **word)
{
    unsigned i, equals = 0;
    int in_quote = 0, quoted = 0;
    char *param, *val = NULL;

    if (*args == '"') {
        args++;
        in_quote = 1;
        quoted = 1;
    }
    for (i = 0; args[i]; i++) {
        if (args[i] == ' ' && !in_quote)
            break;
        if (equals == 0 && args[i] == '=')
            equals = i;
        if (args[i] == '"')
            in_quote = !in_quote;
    }
    param = args;
    if (equals) {
        args[equals] = '\0';
        val = args + equals + 1;
        if (*val == '"') {
            val++;
            if (args[i - 1] == '"')
                args[i - 1] = '\0';
        }
    }
    if (quoted && i > 0 && args[i - 1] == '"')
        args[i - 1] = '\0';
    if (args[i]) {
        args[i] = '\0';
        args += i + 1;
    } else {
        args += i;
    }
    while (*args == ' ')
        args++;
    /* repair_env_string: "key" "value" -> "key=value" */
    if (val != NULL) {
        if (val[-1] == '"') {
            val[-2] = '=';
            memmove(val - 1, val, strlen(val) + 1);
        } else {
            val[-1] = '=';
        }
    }
    *word = param;
    return args;
}

/* Splits line like the kernel; returns the number of words. */
static size_t
kernel_split(char *line, char **words, size_t max)
{
    size_t n = 0;

    while (*line == ' ')
        line++;
    while (*line && n < max)
        line = kernel_next_arg(line, &words[n++]);
    return n;
}

static void
roundtrip(const char *const *args, size_t nargs)
{
    char why[200], *line, *words[64];
    size_t n;

    line = cmdline_join(NULL, args, nargs, CMDLINE_MAX, why, sizeof(why));
    assert_non_null(line);
    n = kernel_split(line, words, 64);
    assert_int_equal(n, nargs);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(words[i], args[i]);
    free(line);
}

static void
test_boundaries_survive(void **state)
{
    static const char *const a1[] = {"plain", "two words", "", "k=v w",
                                     "  lead and trail  ", "x=", "=y",
                                     "\xc3\xa9t\xc3\xa9 ok"};
    static const char *const a2[] = {"--", "hello world", "--port", "80"};

    (void)state;
    roundtrip(a1, sizeof(a1) / sizeof(a1[0]));
    roundtrip(a2, sizeof(a2) / sizeof(a2[0]));
}

static void
test_join_format(void **state)
{
    static const char *const a[] = {"a", "b c", "", "d"};
    char why[200], *line;

    (void)state;
    line = cmdline_join("console=ttyS0 quiet", a, 4, CMDLINE_MAX, why,
                        sizeof(why));
    assert_string_equal(line, "console=ttyS0 quiet a \"b c\" \"\" d");
    free(line);
    line = cmdline_join("", a, 1, CMDLINE_MAX, why, sizeof(why));
    assert_string_equal(line, "a");
    free(line);
    line = cmdline_join("img", NULL, 0, CMDLINE_MAX, why, sizeof(why));
    assert_string_equal(line, "img");
    free(line);
    assert_int_equal(cmdline_arg_len("a b"), 5);
    assert_int_equal(cmdline_arg_len(""), 2);
    assert_int_equal(cmdline_arg_len("ab"), 2);
}

static void
test_refused(void **state)
{
    static const char *const quote[] = {"ok", "say \"hi\""};
    static const char *const ctl[] = {"tab\there"};
    char why[200];

    (void)state;
    assert_null(cmdline_join(NULL, quote, 2, CMDLINE_MAX, why, sizeof(why)));
    assert_non_null(strstr(why, "args[1]"));
    assert_non_null(strstr(why, "double quote"));
    assert_null(cmdline_join(NULL, ctl, 1, CMDLINE_MAX, why, sizeof(why)));
    assert_non_null(strstr(why, "0x09"));
    assert_int_equal(cmdline_arg_check("a\x7f", why, sizeof(why)), -1);
    assert_int_equal(cmdline_arg_check("a b=c", why, sizeof(why)), 0);
}

static void
test_limit(void **state)
{
    char *img = xmalloc(CMDLINE_IMAGE_MAX + 1), *arg = xmalloc(CMDLINE_ARGS_MAX);
    const char *args[1] = {arg};
    char why[200], *line;

    (void)state;
    /* The largest image cmdline and args the API accepts fit exactly. */
    memset(img, 'i', CMDLINE_IMAGE_MAX);
    img[CMDLINE_IMAGE_MAX] = '\0';
    memset(arg, 'a', CMDLINE_ARGS_MAX - 3);
    arg[0] = ' '; /* quoted: +2 */
    arg[CMDLINE_ARGS_MAX - 3] = '\0';
    assert_int_equal(cmdline_arg_len(arg), CMDLINE_ARGS_MAX - 1);
    arg[CMDLINE_ARGS_MAX - 3] = 'a';
    arg[CMDLINE_ARGS_MAX - 2] = '\0';
    assert_int_equal(cmdline_arg_len(arg), CMDLINE_ARGS_MAX);
    line = cmdline_join(img, args, 1, CMDLINE_MAX, why, sizeof(why));
    assert_non_null(line);
    assert_int_equal(strlen(line), CMDLINE_MAX);
    free(line);
    /* One more byte is refused, naming the sizes. */
    arg[CMDLINE_ARGS_MAX - 2] = 'a';
    arg[CMDLINE_ARGS_MAX - 1] = '\0';
    assert_null(cmdline_join(img, args, 1, CMDLINE_MAX, why, sizeof(why)));
    assert_non_null(strstr(why, "2048 bytes; at most 2047"));
    free(img);
    free(arg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundaries_survive),
        cmocka_unit_test(test_join_format),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
