/*
 * conf: "key = value" configuration files and --key value flags.
 *
 * A program describes its settings once, as a table of struct conf_key;
 * the same table parses the file, the command-line overrides, --help and
 * the check-only mode. Lines are "key = value", '#' starts a comment, blank
 * lines are ignored; values may be double-quoted. Errors name the file,
 * the line and the key.
 */
#ifndef OTA_CONF_H
#define OTA_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CONF_ALIAS: another name for the key named by `help`; min = 1 makes
 * it an old name that warns when used (e.g. {"pubkey", CONF_ALIAS, 0, 0,
 * 0, 0, "publisher_key"}). Aliases are not listed by --help. */
enum conf_type { CONF_STR, CONF_U32, CONF_BOOL, CONF_ALIAS };

struct conf_key {
	const char *name; /* file key; the flag is --name with '_' -> '-' */
	enum conf_type type;
	size_t off;	   /* offsetof(target struct, field) */
	size_t size;	   /* CONF_STR: size of the char array */
	uint32_t min, max; /* CONF_U32 range */
	const char *help;
};

/* Set one key from its text value; err gets "key 'x': reason". */
int conf_set(const struct conf_key *keys, void *target, const char *key,
	     const char *val, char *err, size_t errlen);

/* Parse a file; err gets "file:line: key 'x': reason". */
int conf_load_file(const char *path, const struct conf_key *keys, void *target,
		   char *err, size_t errlen);

struct conf_cli {
	const char *config; /* -c / --config FILE, NULL if none */
	bool check;	    /* --check: validate and exit */
	bool help;	    /* -h / --help */
	int nargs;	    /* positional arguments, in args[] */
	const char *args[8];
};

/*
 * Load the file named by -c/--config (if any), then apply every
 * "--key value" / "--key=value" flag over it, in order. Positional
 * arguments (at most 8) land in cli->args.
 */
int conf_from_argv(int argc, char **argv, const struct conf_key *keys,
		   void *target, struct conf_cli *cli, char *err,
		   size_t errlen);

/* Print one line per key: "  --name VALUE   help" (for --help). */
void conf_print_help(const struct conf_key *keys);
/* The same, with "(default: X)" after each key whose value in `defaults`
 * (a target struct holding the defaults) is set: a non-empty string, a
 * non-zero number, true. */
void conf_print_help_defaults(const struct conf_key *keys,
			      const void *defaults);

#endif
