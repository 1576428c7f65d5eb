#include "common/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_HELP 512

static const struct conf_key *conf__find_name(const struct conf_key *keys,
					      const char *name, size_t len)
{
	for (const struct conf_key *k = keys; k->name; k++) {
		if (strlen(k->name) != len)
			continue;
		bool same = true;
		for (size_t i = 0; i < len && same; i++) {
			char c = name[i] == '-' ? '_' : name[i];
			char w = k->name[i] == '-' ? '_' : k->name[i];
			same = c == w;
		}
		if (same)
			return k;
	}
	return NULL;
}

/* By name or alias; an old name warns (once per use) on stderr. */
static const struct conf_key *conf__find(const struct conf_key *keys,
					 const char *name, size_t len)
{
	const struct conf_key *k = conf__find_name(keys, name, len);
	if (!k || k->type != CONF_ALIAS)
		return k;
	const struct conf_key *to =
	    conf__find_name(keys, k->help, strlen(k->help));
	if (to && k->min)
		fprintf(stderr,
			"warning: '%.*s' is the old name of '%s' (it "
			"still works; use the new one)\n",
			(int)len, name, to->name);
	return to && to->type != CONF_ALIAS ? to : NULL;
}

/* A key named test_* is a test hook (a device's simulated loss, crash
 * points...): only a test build knows it. Why a release binary refuses it,
 * or "" for any other unknown key. */
static const char *conf__test_hook(const char *name, size_t len)
{
	if (len > 5 &&
	    (!strncmp(name, "test_", 5) || !strncmp(name, "test-", 5)))
		return ": a test hook, compiled only into test builds (make "
		       "VARIANT=asan or VARIANT=hooks)";
	return "";
}

static int conf__set_key(const struct conf_key *k, void *target,
			 const char *val, char *err, size_t errlen)
{
	char *field = (char *)target + k->off;
	switch (k->type) {
	case CONF_STR: {
		size_t n = strlen(val);
		if (n >= k->size) {
			snprintf(err, errlen,
				 "key '%s': value longer than %zu characters",
				 k->name, k->size - 1);
			return -1;
		}
		memcpy(field, val, n + 1);
		return 0;
	}
	case CONF_U32: {
		char *end = NULL;
		errno = 0;
		if (!isdigit((unsigned char)val[0])) {
			snprintf(err, errlen, "key '%s': '%s' is not a number",
				 k->name, val);
			return -1;
		}
		unsigned long long v = strtoull(val, &end, 10);
		if (errno != 0 || *end != '\0' || v < k->min || v > k->max) {
			snprintf(err, errlen,
				 "key '%s': '%s' is not a number in %u..%u",
				 k->name, val, k->min, k->max);
			return -1;
		}
		*(uint32_t *)(void *)field = (uint32_t)v;
		return 0;
	}
	case CONF_BOOL:
		if (!strcmp(val, "true") || !strcmp(val, "yes") ||
		    !strcmp(val, "1")) {
			*(bool *)(void *)field = true;
			return 0;
		}
		if (!strcmp(val, "false") || !strcmp(val, "no") ||
		    !strcmp(val, "0")) {
			*(bool *)(void *)field = false;
			return 0;
		}
		snprintf(err, errlen, "key '%s': '%s' is not true or false",
			 k->name, val);
		return -1;
	case CONF_ALIAS:
		break;
	}
	return -1;
}

int conf_set(const struct conf_key *keys, void *target, const char *key,
	     const char *val, char *err, size_t errlen)
{
	const struct conf_key *k = conf__find(keys, key, strlen(key));
	if (!k) {
		snprintf(err, errlen, "unknown key '%s'%s", key,
			 conf__test_hook(key, strlen(key)));
		return -1;
	}
	return conf__set_key(k, target, val, err, errlen);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

int conf_load_file(const char *path, const struct conf_key *keys, void *target,
		   char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	char line[2048], why[512];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line too long", path,
				 lineno);
			rc = -1;
			break;
		}
		char *hash = strchr(line, '#');
		char *eq = strchr(line, '=');
		if (hash && (!eq || hash < eq))
			*hash = '\0';
		char *s = trim(line);
		if (*s == '\0')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected 'key = value'",
				 path, lineno);
			rc = -1;
			break;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		/* A value may be quoted ('#' inside quotes is kept, and a
		 * comment may follow the closing quote); an unquoted value
		 * ends at a comment. */
		if (val[0] == '"') {
			char *close = strchr(val + 1, '"');
			char *rest = close ? trim(close + 1) : NULL;
			if (!close || (*rest != '\0' && *rest != '#')) {
				snprintf(err, errlen,
					 "%s:%d: key '%s': unbalanced quotes",
					 path, lineno, key);
				rc = -1;
				break;
			}
			*close = '\0';
			val++;
		} else if ((hash = strchr(val, '#')) != NULL) {
			*hash = '\0';
			val = trim(val);
		}
		if (conf_set(keys, target, key, val, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			rc = -1;
			break;
		}
	}
	fclose(f);
	return rc;
}

static bool is_bool_word(const char *s)
{
	static const char *const words[] = {"true", "false", "yes",
					    "no",   "1",     "0"};
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (!strcmp(s, words[i]))
			return true;
	return false;
}

int conf_from_argv(int argc, char **argv, const struct conf_key *keys,
		   void *target, struct conf_cli *cli, char *err, size_t errlen)
{
	memset(cli, 0, sizeof(*cli));
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "%s needs a file",
					 argv[i]);
				return -1;
			}
			cli->config = argv[++i];
		}
	}
	if (cli->config &&
	    conf_load_file(cli->config, keys, target, err, errlen) != 0)
		return -1;
	char why[512];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
			i++;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			cli->help = true;
			continue;
		}
		if (!strcmp(a, "--check")) {
			cli->check = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			if (cli->nargs >= 8) {
				snprintf(err, errlen, "too many arguments");
				return -1;
			}
			cli->args[cli->nargs++] = a;
			continue;
		}
		const char *name = a + 2, *val = NULL;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const struct conf_key *k = conf__find(keys, name, nlen);
		if (!k) {
			snprintf(err, errlen, "unknown option '%s'%s", a,
				 *conf__test_hook(name, nlen)
				     ? conf__test_hook(name, nlen)
				     : " (see --help)");
			return -1;
		}
		if (eq)
			val = eq + 1;
		else if (k->type == CONF_BOOL &&
			 (i + 1 >= argc || !is_bool_word(argv[i + 1])))
			val = "true"; /* a bare flag; what follows is not its */
		else if (i + 1 < argc)
			val = argv[++i];
		else {
			snprintf(err, errlen, "option '%s' needs a value", a);
			return -1;
		}
		if (conf__set_key(k, target, val, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "option %s: %s", a, why);
			return -1;
		}
	}
	return 0;
}

static void default_text(const struct conf_key *k, const void *defaults,
			 char *buf, size_t n)
{
	const char *f = defaults ? (const char *)defaults + k->off : NULL;
	buf[0] = '\0';
	if (!f)
		return;
	if (k->type == CONF_STR && f[0])
		snprintf(buf, n, " (default: %s)", f);
	else if (k->type == CONF_U32 && *(const uint32_t *)(const void *)f)
		snprintf(buf, n, " (default: %u)",
			 *(const uint32_t *)(const void *)f);
	else if (k->type == CONF_BOOL && *(const bool *)(const void *)f)
		snprintf(buf, n, " (default: true)");
}

void conf_print_help(const struct conf_key *keys)
{
	conf_print_help_defaults(keys, NULL);
}

void conf_print_help_defaults(const struct conf_key *keys, const void *defaults)
{
	char text[1024];
	for (const struct conf_key *k = keys; k->name; k++) {
		if (k->type == CONF_ALIAS)
			continue;
		char flag[80];
		int n = snprintf(flag, sizeof(flag), "--%s", k->name);
		for (int i = 2; i < n; i++)
			if (flag[i] == '_')
				flag[i] = '-';
		const char *arg = k->type == CONF_U32	 ? " N"
				  : k->type == CONF_BOOL ? ""
							 : " VALUE";
		printf("  %s%-*s", flag, 30 - n, arg);
		/* The text in a column from 34, wrapped at 79. */
		char dflt[PATH_MAX_HELP];
		default_text(k, defaults, dflt, sizeof(dflt));
		snprintf(text, sizeof(text), "%s%s", k->help, dflt);
		const char *h = text;
		int col =
		    2 + n +
		    (30 - n > (int)strlen(arg) ? 30 - n : (int)strlen(arg));
		if (col > 32) {
			printf("\n");
			col = 0;
		}
		while (*h) {
			size_t len = strlen(h), take = len;
			if (len > 79 - 33) {
				take = 79 - 33;
				while (take > 0 && h[take] != ' ')
					take--;
				if (take == 0)
					take = 79 - 33;
			}
			printf("%*s%.*s\n", 33 - col, "", (int)take, h);
			col = 0;
			h += take;
			while (*h == ' ')
				h++;
		}
		if (!*text)
			printf("\n");
	}
}
