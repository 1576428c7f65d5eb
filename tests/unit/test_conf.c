/*
 * Unit tests for common/conf (key = value files, --key value flags) and
 * common/util (atomic writes, bounded reads, mkdir -p, Ed25519 key files).
 * Each test works in a fresh mkdtemp() directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/fixture.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/confcheck.h"
#include "common/util.h"
#include "proto/proto.h"

struct tconf {
	char name[16];
	uint32_t port;
	bool verbose;
	char log_level[8];
};

#define K(n, type, field, lo, hi)                                              \
	{                                                                      \
		n, type, offsetof(struct tconf, field),                        \
		    sizeof(((struct tconf *)0)->field), lo, hi, "help for " n  \
	}

static const struct conf_key keys[] = {
    K("name", CONF_STR, name, 0, 0),
    K("port", CONF_U32, port, 1, 65535),
    K("verbose", CONF_BOOL, verbose, 0, 0),
    K("log_level", CONF_STR, log_level, 0, 0),
    {0}};

static void tconf_defaults(struct tconf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "default");
	c->port = 8883;
	snprintf(c->log_level, sizeof(c->log_level), "info");
}

static int setup(void **state) { return fx_setup_named(state, "test.conf"); }
static int teardown(void **state) { return fx_teardown(state); }

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

/* Load `text` as a config file; returns conf_load_file's result. */
static int load(struct fx *f, const char *text, struct tconf *c, char *err,
		size_t errlen)
{
	write_file(f->path, text);
	tconf_defaults(c);
	err[0] = '\0';
	return conf_load_file(f->path, keys, c, err, errlen);
}

/* err must contain "<path>:<line>" and every other non-NULL string. */
static void err_has(const struct fx *f, const char *err, int line,
		    const char *a, const char *b)
{
	char where[160];
	snprintf(where, sizeof(where), "%s:%d:", f->path, line);
	if (!strstr(err, where))
		print_error("'%s' does not contain '%s'\n", err, where);
	assert_non_null(strstr(err, where));
	if (a && !strstr(err, a))
		print_error("'%s' does not contain '%s'\n", err, a);
	assert_true(!a || strstr(err, a));
	if (b && !strstr(err, b))
		print_error("'%s' does not contain '%s'\n", err, b);
	assert_true(!b || strstr(err, b));
}

/* ------------------------------------------------------------- conf file */

static void test_conf_file_values(void **state)
{
	struct fx *f = *state;
	struct tconf c;
	char err[512];
	assert_int_equal(load(f,
			      "# a comment\n"
			      "\n"
			      "   \t\n"
			      "name = alpha\n"
			      "  port=8080   \n"
			      "\tverbose = true\n"
			      "   # indented comment\n"
			      "log_level = debug\n",
			      &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.name, "alpha");
	assert_int_equal(c.port, 8080);
	assert_true(c.verbose);
	assert_string_equal(c.log_level, "debug");

	/* A file without a final newline; bounds of the range; false. */
	assert_int_equal(load(f, "port = 65535\nverbose = false", &c, err,
			      sizeof(err)),
			 0);
	assert_int_equal(c.port, 65535);
	assert_false(c.verbose);
	assert_string_equal(c.name, "default"); /* untouched */
	assert_int_equal(load(f, "port = 1\n", &c, err, sizeof(err)), 0);
	assert_int_equal(c.port, 1);

	/* An empty file changes nothing. */
	assert_int_equal(load(f, "", &c, err, sizeof(err)), 0);
	assert_int_equal(c.port, 8883);

	/* A later line wins. */
	assert_int_equal(load(f, "name = one\nname = two\n", &c, err,
			      sizeof(err)),
			 0);
	assert_string_equal(c.name, "two");

	/* The longest value that fits the buffer (15 characters). */
	assert_int_equal(load(f, "name = 123456789012345\n", &c, err,
			      sizeof(err)),
			 0);
	assert_string_equal(c.name, "123456789012345");
}

static void test_conf_file_comments_and_quotes(void **state)
{
	struct fx *f = *state;
	struct tconf c;
	char err[512];
	/* Unquoted: a trailing comment ends the value. */
	assert_int_equal(load(f, "name = beta # the name\nport = 99#x\n", &c,
			      err, sizeof(err)),
			 0);
	assert_string_equal(c.name, "beta");
	assert_int_equal(c.port, 99);
	/* Quoted: '#' is part of the value, quotes are removed, and the
	 * spaces inside are kept. */
	assert_int_equal(load(f, "name = \"a#b c\"\n", &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.name, "a#b c");
	assert_int_equal(load(f, "name = \"  x  \"\n", &c, err, sizeof(err)),
			 0);
	assert_string_equal(c.name, "  x  ");
	/* A quoted empty value. */
	assert_int_equal(load(f, "name = \"\"\n", &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "");
	/* A commented-out key is not read. */
	assert_int_equal(load(f, "# name = gamma\n", &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "default");
}

/* A quoted value followed by a comment: the quotes delimit the value and
 * the comment is dropped, as for an unquoted value. */
static void test_conf_file_quoted_then_comment(void **state)
{
	struct fx *f = *state;
	struct tconf c;
	char err[512];
	assert_int_equal(load(f, "name = \"abc\" # note\n", &c, err,
			      sizeof(err)),
			 0);
	assert_string_equal(c.name, "abc");
	assert_int_equal(load(f, "name = \"a#b\" # note\n", &c, err,
			      sizeof(err)),
			 0);
	assert_string_equal(c.name, "a#b");
}

static void test_conf_file_errors(void **state)
{
	struct fx *f = *state;
	struct tconf c;
	char err[512];

	assert_int_equal(load(f, "name = a\n# c\nbogus = 1\n", &c, err,
			      sizeof(err)),
			 -1);
	err_has(f, err, 3, "unknown key", "'bogus'");

	assert_int_equal(load(f, "name = a\nport 80\n", &c, err, sizeof(err)),
			 -1);
	err_has(f, err, 2, "expected 'key = value'", NULL);

	assert_int_equal(load(f, "\nport = 70000\n", &c, err, sizeof(err)), -1);
	err_has(f, err, 2, "'port'", "1..65535");
	assert_int_equal(c.port, 8883);

	assert_int_equal(load(f, "port = 0\n", &c, err, sizeof(err)), -1);
	err_has(f, err, 1, "'port'", "1..65535");

	assert_int_equal(load(f, "port = abc\n", &c, err, sizeof(err)), -1);
	err_has(f, err, 1, "'port'", "not a number");

	static const char *const not_numbers[] = {
	    "port = -1\n",   "port = 12abc\n",
	    "port = \n",     "port = 1 2\n",
	    "port = 0x10\n", "port = 99999999999999999999999\n",
	    "port = +5\n",   "port = 4294967297\n",
	};
	for (size_t i = 0; i < sizeof(not_numbers) / sizeof(*not_numbers);
	     i++) {
		assert_int_equal(load(f, not_numbers[i], &c, err, sizeof(err)),
				 -1);
		err_has(f, err, 1, "'port'", "not a number");
		assert_int_equal(c.port, 8883);
	}

	assert_int_equal(load(f, "verbose = maybe\n", &c, err, sizeof(err)),
			 -1);
	err_has(f, err, 1, "'verbose'", "not true or false");
	assert_int_equal(load(f, "verbose = TRUE\n", &c, err, sizeof(err)), -1);
	err_has(f, err, 1, "'verbose'", "not true or false");

	assert_int_equal(load(f, "name = 1234567890123456\n", &c, err,
			      sizeof(err)),
			 -1);
	err_has(f, err, 1, "'name'", "longer than 15");
	assert_string_equal(c.name, "default");

	/* A line longer than the reader's buffer is refused, not split. */
	char big[3000];
	memset(big, 'x', sizeof(big));
	memcpy(big, "name = ", 7);
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(load(f, big, &c, err, sizeof(err)), -1);
	err_has(f, err, 1, "too long", NULL);

	/* A missing file names the file. */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope.conf", f->root);
	tconf_defaults(&c);
	assert_int_equal(conf_load_file(missing, keys, &c, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, missing));
	assert_non_null(strstr(err, "No such file"));
}

static void test_conf_set(void **state)
{
	struct tconf c;
	char err[256];
	(void)state;
	tconf_defaults(&c);
	assert_int_equal(conf_set(keys, &c, "port", "42", err, sizeof(err)), 0);
	assert_int_equal(c.port, 42);
	/* Dashes name the same key as underscores. */
	assert_int_equal(conf_set(keys, &c, "log-level", "warn", err,
				  sizeof(err)),
			 0);
	assert_string_equal(c.log_level, "warn");
	assert_int_equal(conf_set(keys, &c, "nope", "1", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown key 'nope'"));
	assert_null(strstr(err, "test hook"));
	/* A test_* key the table lacks (a release build's): said to be a
	 * test hook, and which build has it. */
	assert_int_equal(conf_set(keys, &c, "test_drop_percent", "3", err,
				  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "unknown key 'test_drop_percent': a test "
				    "hook"));
	assert_non_null(strstr(err, "VARIANT=asan"));
	/* A prefix of a key is not that key. */
	assert_int_equal(conf_set(keys, &c, "por", "1", err, sizeof(err)), -1);
	assert_int_equal(conf_set(keys, &c, "ports", "1", err, sizeof(err)),
			 -1);
	assert_int_equal(conf_set(keys, &c, "verbose", "yes", err, sizeof(err)),
			 0);
	assert_true(c.verbose);
	assert_int_equal(conf_set(keys, &c, "verbose", "0", err, sizeof(err)),
			 0);
	assert_false(c.verbose);
}

/* ------------------------------------------------------------- conf argv */

static int argv_run(struct tconf *c, struct conf_cli *cli, char *err,
		    size_t errlen, int argc, const char **argv)
{
	tconf_defaults(c);
	err[0] = '\0';
	return conf_from_argv(argc, (char **)argv, keys, c, cli, err, errlen);
}

#define ARGV(...)                                                              \
	(const char *[]) { "prog", __VA_ARGS__ }
#define ARGC(...)                                                              \
	(1 +                                                                   \
	 (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)))
#define RUN(c, cli, err, ...)                                                  \
	argv_run(c, cli, err, sizeof(err), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

static void test_argv_flags(void **state)
{
	struct tconf c;
	struct conf_cli cli;
	char err[512];
	(void)state;
	assert_int_equal(RUN(&c, &cli, err, "--name", "x", "--port=99",
			     "--log-level", "warn", "--verbose"),
			 0);
	assert_string_equal(c.name, "x");
	assert_int_equal(c.port, 99);
	assert_string_equal(c.log_level, "warn");
	assert_true(c.verbose);
	assert_null(cli.config);
	assert_false(cli.check);
	assert_false(cli.help);
	assert_int_equal(cli.nargs, 0);

	/* --key=value with a dash in the name; a value containing '='. */
	assert_int_equal(RUN(&c, &cli, err, "--log-level=error", "--name=a=b"),
			 0);
	assert_string_equal(c.log_level, "error");
	assert_string_equal(c.name, "a=b");

	/* A bool flag with no value, followed by another flag: true. */
	assert_int_equal(RUN(&c, &cli, err, "--verbose", "--port", "7"), 0);
	assert_true(c.verbose);
	assert_int_equal(c.port, 7);
	/* With an explicit value. */
	assert_int_equal(RUN(&c, &cli, err, "--verbose=false"), 0);
	assert_false(c.verbose);
	assert_int_equal(RUN(&c, &cli, err, "--verbose", "false"), 0);
	assert_false(c.verbose);

	/* Later flags win. */
	assert_int_equal(RUN(&c, &cli, err, "--port", "1", "--port", "2"), 0);
	assert_int_equal(c.port, 2);
}

/* Other names for a key: a plain alias, an old name (warns), and an alias
 * of nothing, which is no key at all. */
static const struct conf_key alias_keys[] = {
    K("name", CONF_STR, name, 0, 0),
    K("port", CONF_U32, port, 1, 65535),
    {"nick", CONF_ALIAS, 0, 0, 0, 0, "name"},
    {"old_port", CONF_ALIAS, 0, 0, 1, 0, "port"},
    {"ghost", CONF_ALIAS, 0, 0, 0, 0, "nothing"},
    {0}};

static void test_conf_alias(void **state)
{
	struct tconf c;
	struct conf_cli cli;
	char err[512];
	(void)state;
	tconf_defaults(&c);
	const char *argv[] = {"prog", "--nick", "x", "--old-port=99"};
	assert_int_equal(conf_from_argv(4, (char **)argv, alias_keys, &c, &cli,
					err, sizeof(err)),
			 0);
	assert_string_equal(c.name, "x");
	assert_int_equal(c.port, 99);
	/* In a file too, and range checks are the target's. */
	assert_int_equal(conf_set(alias_keys, &c, "old_port", "7", err,
				  sizeof(err)),
			 0);
	assert_int_equal(c.port, 7);
	assert_int_equal(conf_set(alias_keys, &c, "old_port", "0", err,
				  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "'port'"));
	assert_int_equal(conf_set(alias_keys, &c, "ghost", "1", err,
				  sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "unknown key 'ghost'"));
}

/* A bool flag given alone before a positional argument, as in the documented
 * "ota-gateway verify --pubkey PUB [--json] PACKAGE": the flag means true and
 * the argument stays positional. */
static void test_argv_bool_before_positional(void **state)
{
	struct tconf c;
	struct conf_cli cli;
	char err[512];
	(void)state;
	int rc = RUN(&c, &cli, err, "--verbose", "pkg.ota");
	if (rc != 0)
		print_error("conf_from_argv: %s\n", err);
	assert_int_equal(rc, 0);
	assert_true(c.verbose);
	assert_int_equal(cli.nargs, 1);
	assert_string_equal(cli.args[0], "pkg.ota");
}

static void test_argv_special(void **state)
{
	struct tconf c;
	struct conf_cli cli;
	char err[512];
	(void)state;
	assert_int_equal(RUN(&c, &cli, err, "a", "--check", "b", "--port", "5",
			     "c"),
			 0);
	assert_true(cli.check);
	assert_false(cli.help);
	assert_int_equal(cli.nargs, 3);
	assert_string_equal(cli.args[0], "a");
	assert_string_equal(cli.args[1], "b");
	assert_string_equal(cli.args[2], "c");
	assert_int_equal(c.port, 5);

	assert_int_equal(RUN(&c, &cli, err, "--help"), 0);
	assert_true(cli.help);
	assert_int_equal(RUN(&c, &cli, err, "-h"), 0);
	assert_true(cli.help);

	/* At most 8 positional arguments. */
	assert_int_equal(RUN(&c, &cli, err, "1", "2", "3", "4", "5", "6", "7",
			     "8"),
			 0);
	assert_int_equal(cli.nargs, 8);
	assert_string_equal(cli.args[7], "8");
	assert_int_equal(RUN(&c, &cli, err, "1", "2", "3", "4", "5", "6", "7",
			     "8", "9"),
			 -1);
	assert_non_null(strstr(err, "too many arguments"));
}

static void test_argv_errors(void **state)
{
	struct tconf c;
	struct conf_cli cli;
	char err[512];
	(void)state;
	assert_int_equal(RUN(&c, &cli, err, "--bogus", "1"), -1);
	assert_non_null(strstr(err, "unknown option '--bogus'"));
	assert_non_null(strstr(err, "--help"));
	assert_int_equal(RUN(&c, &cli, err, "--bogus=1"), -1);
	assert_non_null(strstr(err, "unknown option '--bogus=1'"));
	assert_int_equal(RUN(&c, &cli, err, "--test-crash-at", "verify"), -1);
	assert_non_null(strstr(err, "unknown option '--test-crash-at': a test "
				    "hook, compiled only into test builds"));

	assert_int_equal(RUN(&c, &cli, err, "--name"), -1);
	assert_non_null(strstr(err, "option '--name' needs a value"));
	assert_int_equal(RUN(&c, &cli, err, "--verbose", "--port"), -1);
	assert_non_null(strstr(err, "option '--port' needs a value"));

	assert_int_equal(RUN(&c, &cli, err, "--port", "70000"), -1);
	assert_non_null(strstr(err, "--port"));
	assert_non_null(strstr(err, "'port'"));
	assert_non_null(strstr(err, "1..65535"));
	assert_int_equal(RUN(&c, &cli, err, "--port=x"), -1);
	assert_non_null(strstr(err, "not a number"));
	assert_int_equal(RUN(&c, &cli, err, "--verbose=maybe"), -1);
	assert_non_null(strstr(err, "not true or false"));
	assert_int_equal(RUN(&c, &cli, err, "--name", "1234567890123456"), -1);
	assert_non_null(strstr(err, "longer than 15"));

	assert_int_equal(RUN(&c, &cli, err, "-c"), -1);
	assert_non_null(strstr(err, "-c needs a file"));
	assert_int_equal(RUN(&c, &cli, err, "--config"), -1);
	assert_non_null(strstr(err, "--config needs a file"));
}

static void test_argv_config_file(void **state)
{
	struct fx *f = *state;
	struct tconf c;
	struct conf_cli cli;
	char err[512];
	write_file(f->path, "name = fromfile\nport = 1111\nverbose = true\n");

	assert_int_equal(RUN(&c, &cli, err, "-c", f->path), 0);
	assert_string_equal(cli.config, f->path);
	assert_string_equal(c.name, "fromfile");
	assert_int_equal(c.port, 1111);
	assert_true(c.verbose);
	assert_int_equal(cli.nargs, 0);

	/* Flags override the file, before or after -c. */
	assert_int_equal(RUN(&c, &cli, err, "--port", "2222", "-c", f->path,
			     "--verbose=false"),
			 0);
	assert_string_equal(c.name, "fromfile");
	assert_int_equal(c.port, 2222);
	assert_false(c.verbose);
	assert_int_equal(RUN(&c, &cli, err, "--config", f->path, "--name",
			     "fromflag"),
			 0);
	assert_string_equal(c.name, "fromflag");
	assert_int_equal(c.port, 1111);
	assert_int_equal(cli.nargs, 0);

	/* A file error comes out with its file:line. */
	write_file(f->path, "name = ok\nport = 0\n");
	assert_int_equal(RUN(&c, &cli, err, "-c", f->path), -1);
	err_has(f, err, 2, "'port'", NULL);
	/* A missing file. */
	char missing[160];
	snprintf(missing, sizeof(missing), "%s/nope.conf", f->root);
	assert_int_equal(RUN(&c, &cli, err, "-c", missing), -1);
	assert_non_null(strstr(err, missing));
}

/* ----------------------------------------------------------------- util */

static void path_in(char *out, size_t n, const struct fx *f, const char *name)
{
	assert_int_equal(util_path(out, n, f->root, name), 0);
}

static size_t dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t n = 0;
	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_util_path(void **state)
{
	char out[8];
	(void)state;
	assert_int_equal(util_path(out, sizeof(out), "ab", "cd"), 0);
	assert_string_equal(out, "ab/cd");
	assert_int_equal(util_path(out, sizeof(out), "abc", "def"), 0);
	assert_string_equal(out, "abc/def");
	assert_int_equal(util_path(out, sizeof(out), "abc", "defg"), -1);
}

static void test_util_write_atomic(void **state)
{
	struct fx *f = *state;
	char p[160], tmp[176], err[256] = "", *buf = NULL;
	size_t len = 0;
	struct stat st;
	mode_t old = umask(022);
	path_in(p, sizeof(p), f, "state.json");
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);

	assert_int_equal(util_write_atomic(p, "hello world", 11, 0600, err,
					   sizeof(err)),
			 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 11);
	assert_int_equal(util_read_file(p, 100, &buf, &len, err, sizeof(err)),
			 0);
	assert_int_equal(len, 11);
	assert_string_equal(buf, "hello world");
	free(buf);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(dir_entries(f->root), 1);

	/* Replacing with shorter content leaves no old tail; new mode. */
	assert_int_equal(util_write_atomic(p, "bye", 3, 0644, err, sizeof(err)),
			 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 3);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(util_read_file(p, 100, &buf, &len, err, sizeof(err)),
			 0);
	assert_string_equal(buf, "bye");
	free(buf);
	assert_int_equal(access(tmp, F_OK), -1);
	assert_int_equal(dir_entries(f->root), 1);

	/* Empty content. */
	assert_int_equal(util_write_atomic(p, "", 0, 0600, err, sizeof(err)),
			 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_size, 0);

	/* Into a missing directory: an error naming the path, no file. */
	char bad[200];
	snprintf(bad, sizeof(bad), "%s/missing/x", f->root);
	err[0] = '\0';
	assert_int_equal(util_write_atomic(bad, "x", 1, 0600, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, bad));
	assert_int_equal(dir_entries(f->root), 1);
	umask(old);
}

static void test_util_read_file(void **state)
{
	struct fx *f = *state;
	char p[160], err[256] = "", *buf = NULL;
	size_t len = 0;
	path_in(p, sizeof(p), f, "data");
	write_file(p, "0123456789");

	assert_int_equal(util_read_file(p, 10, &buf, &len, err, sizeof(err)),
			 0);
	assert_int_equal(len, 10);
	assert_string_equal(buf, "0123456789");
	free(buf);

	buf = NULL;
	assert_int_equal(util_read_file(p, 9, &buf, &len, err, sizeof(err)),
			 -1);
	assert_null(buf);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "10 bytes"));
	assert_non_null(strstr(err, "more than 9 allowed"));

	/* An empty file: an empty string. */
	write_file(p, "");
	assert_int_equal(util_read_file(p, 0, &buf, &len, err, sizeof(err)), 0);
	assert_int_equal(len, 0);
	assert_string_equal(buf, "");
	free(buf);

	/* Missing file, directory. */
	char missing[200];
	snprintf(missing, sizeof(missing), "%s/nope", f->root);
	buf = NULL;
	assert_int_equal(util_read_file(missing, 10, &buf, &len, err,
					sizeof(err)),
			 -1);
	assert_null(buf);
	assert_non_null(strstr(err, missing));
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(util_read_file(f->root, 10, &buf, &len, err,
					sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "not a regular file"));
}

static void test_util_mkdirs(void **state)
{
	struct fx *f = *state;
	char p[200], err[256] = "";
	struct stat st;
	snprintf(p, sizeof(p), "%s/a/b/c", f->root);
	assert_int_equal(util_mkdirs(p, 0700, err, sizeof(err)), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(p, sizeof(p), "%s/a/b", f->root);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* Again: fine. With a trailing slash: fine. */
	snprintf(p, sizeof(p), "%s/a/b/c", f->root);
	assert_int_equal(util_mkdirs(p, 0700, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/a/b/d/", f->root);
	assert_int_equal(util_mkdirs(p, 0700, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/a/b/d", f->root);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));

	/* Through a regular file: refused with a message. */
	char file[200];
	snprintf(file, sizeof(file), "%s/plain", f->root);
	write_file(file, "x");
	snprintf(p, sizeof(p), "%s/plain/sub", f->root);
	err[0] = '\0';
	assert_int_equal(util_mkdirs(p, 0700, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "plain"));
	err[0] = '\0';
	assert_int_equal(util_mkdirs(file, 0700, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a directory"));
	assert_int_equal(util_mkdirs("", 0700, err, sizeof(err)), -1);
}

static void test_util_keys_round_trip(void **state)
{
	struct fx *f = *state;
	char priv[160], pub[160], err[512] = "";
	uint8_t sk[32], pk[32], sig[64];
	struct stat st;
	static const char msg[] = "{\"product\":\"sensor\"}";
	path_in(priv, sizeof(priv), f, "k.key");
	path_in(pub, sizeof(pub), f, "k.pub");

	assert_int_equal(util_keygen(priv, pub, err, sizeof(err)), 0);
	assert_int_equal(stat(priv, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(pub, &st), 0);

	assert_int_equal(util_load_privkey(priv, sk, err, sizeof(err)), 0);
	assert_int_equal(util_load_pubkey(pub, pk, err, sizeof(err)), 0);
	assert_int_equal(proto_sign(sk, msg, strlen(msg), sig), 0);
	assert_int_equal(proto_verify(pk, msg, strlen(msg), sig), 0);
	assert_int_equal(proto_verify(pk, msg, strlen(msg) - 1, sig),
			 PROTO_ESIG);
	sig[10] ^= 1;
	assert_int_equal(proto_verify(pk, msg, strlen(msg), sig), PROTO_ESIG);

	/* A second pair is a different key: it does not verify the first. */
	char priv2[160], pub2[160];
	uint8_t pk2[32];
	path_in(priv2, sizeof(priv2), f, "k2.key");
	path_in(pub2, sizeof(pub2), f, "k2.pub");
	assert_int_equal(util_keygen(priv2, pub2, err, sizeof(err)), 0);
	assert_int_equal(util_load_pubkey(pub2, pk2, err, sizeof(err)), 0);
	assert_memory_not_equal(pk, pk2, 32);
	sig[10] ^= 1;
	assert_int_equal(proto_verify(pk2, msg, strlen(msg), sig), PROTO_ESIG);

	/* Never overwritten: the old files keep their content. */
	char *before = NULL, *after = NULL, *pbefore = NULL, *pafter = NULL;
	size_t l1, l2, l3, l4;
	assert_int_equal(util_read_file(priv, 4096, &before, &l1, err,
					sizeof(err)),
			 0);
	assert_int_equal(util_read_file(pub, 4096, &pbefore, &l3, err,
					sizeof(err)),
			 0);
	err[0] = '\0';
	assert_int_equal(util_keygen(priv, pub, err, sizeof(err)), -1);
	assert_non_null(strstr(err, priv));
	assert_non_null(strstr(err, "refusing to overwrite"));
	assert_int_equal(util_read_file(priv, 4096, &after, &l2, err,
					sizeof(err)),
			 0);
	assert_int_equal(util_read_file(pub, 4096, &pafter, &l4, err,
					sizeof(err)),
			 0);
	assert_int_equal(l1, l2);
	assert_memory_equal(before, after, l1);
	assert_int_equal(l3, l4);
	assert_memory_equal(pbefore, pafter, l3);
	free(before);
	free(after);
	free(pbefore);
	free(pafter);
}

static void test_util_privkey_mode(void **state)
{
	struct fx *f = *state;
	char priv[160], pub[160], err[512] = "";
	uint8_t sk[32];
	path_in(priv, sizeof(priv), f, "k.key");
	path_in(pub, sizeof(pub), f, "k.pub");
	assert_int_equal(util_keygen(priv, pub, err, sizeof(err)), 0);

	static const mode_t bad[] = {0644, 0640, 0604, 0660, 0601};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		assert_int_equal(chmod(priv, bad[i]), 0);
		err[0] = '\0';
		assert_int_equal(util_load_privkey(priv, sk, err, sizeof(err)),
				 -1);
		assert_non_null(strstr(err, "chmod 600"));
		assert_non_null(strstr(err, priv));
	}
	assert_int_equal(chmod(priv, 0400), 0);
	assert_int_equal(util_load_privkey(priv, sk, err, sizeof(err)), 0);

	/* Missing key file. */
	char missing[200];
	snprintf(missing, sizeof(missing), "%s/none.key", f->root);
	err[0] = '\0';
	assert_int_equal(util_load_privkey(missing, sk, err, sizeof(err)), -1);
	assert_non_null(strstr(err, missing));
	/* A public key is not a private key. */
	assert_int_equal(chmod(pub, 0600), 0);
	assert_int_equal(util_load_privkey(pub, sk, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an Ed25519 private key"));
}

/* An EC P-256 key pair (openssl ecparam -name prime256v1 -genkey). */
static const char ec_pub_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE5e4dwyzMQIpt6WQQ1rNsgJ+PzsGa\n"
    "ZHyVuTiy2Mjo+3ITsb2fR+IrgmT6KVd/ft6YMjzLeUGDUE1BXFcCapSOZw==\n"
    "-----END PUBLIC KEY-----\n";
static const char ec_priv_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgsnFxPRoAb/2utNt2\n"
    "06U6Rv0Q+T35r5Q516TgzA/AjgqhRANCAATl7h3DLMxAim3pZBDWs2yAn4/OwZpk\n"
    "fJW5OLLYyOj7chOxvZ9H4iuCZPopV39+3pgyPMt5QYNQTUFcVwJqlI5n\n"
    "-----END PRIVATE KEY-----\n";

static void test_util_non_ed25519(void **state)
{
	struct fx *f = *state;
	char p[160], err[512] = "";
	uint8_t k[32];
	path_in(p, sizeof(p), f, "ec.pub");
	write_file(p, ec_pub_pem);
	assert_int_equal(util_load_pubkey(p, k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "not an Ed25519 public key"));

	path_in(p, sizeof(p), f, "ec.key");
	write_file(p, ec_priv_pem);
	assert_int_equal(chmod(p, 0600), 0);
	err[0] = '\0';
	assert_int_equal(util_load_privkey(p, k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an Ed25519 private key"));

	/* Not PEM at all; missing. */
	path_in(p, sizeof(p), f, "junk.pub");
	write_file(p, "hello\n");
	err[0] = '\0';
	assert_int_equal(util_load_pubkey(p, k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an Ed25519 public key"));
	path_in(p, sizeof(p), f, "none.pub");
	err[0] = '\0';
	assert_int_equal(util_load_pubkey(p, k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "No such file"));
}

/* The keys both programs share: each fault named by its key, the first
 * in order; NULL cert_file and key_file (a fleet) are not required. */
static void test_confcheck_client(void **state)
{
	(void)state;
	char err[256];
	struct confcheck_client c = {"ca.crt", "d.crt", "d.key", "p.pub",
				     "",       "info",	""};
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), 0);
	c.brokers = "a:8883,b";
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), 0);
	c.brokers = "a:99999";
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "99999"));
	c.log_level = "loud";
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "key 'log_level': 'loud' is not one of "
				 "error, warn, info, debug");
	c.publisher_key = "";
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), -1);
	assert_string_equal(err,
			    "key 'publisher_key (or root_keys)' is required");
	c.root_keys = "r.pub";
	c.key_file = "";
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "key 'key_file' is required");
	c.cert_file = c.key_file = NULL; /* a fleet */
	c.log_level = "debug";
	c.brokers = "";
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), 0);
	c.ca_file = "";
	assert_int_equal(confcheck_client(&c, err, sizeof(err)), -1);
	assert_string_equal(err, "key 'ca_file' is required");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_conf_file_values),
	    T(test_conf_file_comments_and_quotes),
	    T(test_conf_file_quoted_then_comment),
	    T(test_conf_file_errors),
	    cmocka_unit_test(test_conf_set),
	    cmocka_unit_test(test_argv_flags),
	    cmocka_unit_test(test_conf_alias),
	    cmocka_unit_test(test_argv_bool_before_positional),
	    cmocka_unit_test(test_argv_special),
	    cmocka_unit_test(test_argv_errors),
	    T(test_argv_config_file),
	    cmocka_unit_test(test_util_path),
	    T(test_util_write_atomic),
	    T(test_util_read_file),
	    T(test_util_mkdirs),
	    T(test_util_keys_round_trip),
	    T(test_util_privkey_mode),
	    T(test_util_non_ed25519),
	    cmocka_unit_test(test_confcheck_client),
	};

	return cmocka_run_group_tests_name("conf_util", tests, NULL, NULL);
}
