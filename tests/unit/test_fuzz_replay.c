/*
 * Replays the fuzz seeds and the crash files found by `make fuzz` through
 * the fuzz targets themselves, under this build's sanitizers: every file of
 * tests/fuzz/corpus/<target>/ and tests/fuzz/crashes/<target>/. The targets
 * are included with FUZZ_REPLAY defined, which leaves out their
 * LLVMFuzzerTestOneInput and keeps their fuzz_<name>_one() body. A target's
 * invariant failure aborts and a sanitizer report ends the program, so each
 * file's name is printed (a TAP comment) before it runs. Each target must
 * replay at least one file. The repo root is $OTA_ROOT, else ".".
 *
 * A new target is one #include below and one X() in REPLAY_TARGETS (and its
 * fuzz-sources in the Makefile's FUZZ_REPLAY_OBJ when they are not in
 * libota.a). The Makefile rebuilds this test when a target changes.
 */
#define FUZZ_REPLAY 1
#include "tests/fuzz/fuzz_conf.c"
#include "tests/fuzz/fuzz_pkg.c"
#include "tests/fuzz/fuzz_proto.c"
#include "tests/fuzz/fuzz_state.c"
#include "tests/fuzz/fuzz_ledger.c"
#include "tests/fuzz/fuzz_keyset.c"
#include "tests/fuzz/fuzz_enc.c"
#include "tests/fuzz/fuzz_delta.c"

#define REPLAY_TARGETS(X)                                                      \
	X(fuzz_proto)                                                          \
	X(fuzz_pkg)                                                            \
	X(fuzz_conf)                                                           \
	X(fuzz_state)                                                          \
	X(fuzz_ledger)                                                         \
	X(fuzz_keyset)                                                         \
	X(fuzz_enc)                                                            \
	X(fuzz_delta)

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define REPLAY_FILE_MAX (1024 * 1024)

typedef int (*replay_fn)(const uint8_t *data, size_t size);

static const char *repo_root(void)
{
	const char *r = getenv("OTA_ROOT");

	return r != NULL && r[0] != '\0' ? r : ".";
}

/* The whole file in a buffer of exactly its size, as libFuzzer passes it, so
 * that a read past the end is caught. */
static uint8_t *read_exact(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	FILE *f;

	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		fail_msg("%s: not a regular file", path);
	if (st.st_size > REPLAY_FILE_MAX)
		fail_msg("%s: larger than %d bytes", path, REPLAY_FILE_MAX);
	*len = (size_t)st.st_size;
	buf = malloc(*len > 0 ? *len : 1);
	assert_non_null(buf);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	if (fread(buf, 1, *len, f) != *len)
		fail_msg("%s: short read", path);
	fclose(f);
	return buf;
}

/* Replay every file of `dir` (a missing directory has none); returns how
 * many. */
static int replay_dir(const char *dir, replay_fn one)
{
	struct dirent **ents;
	char path[4096];
	int n, count = 0;

	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0)
		return 0;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		uint8_t *buf;
		size_t len;
		int w;

		if (name[0] == '.') {
			free(ents[i]);
			continue;
		}
		w = snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (w < 0 || (size_t)w >= sizeof(path))
			fail_msg("%s/%s: path too long", dir, name);
		free(ents[i]);
		fprintf(stderr, "# replay %s\n", path);
		buf = read_exact(path, &len);
		(void)one(buf, len);
		free(buf);
		count++;
	}
	free(ents);
	return count;
}

static void replay_target(const char *target, replay_fn one)
{
	char corpus[2048], crashes[2048];
	int n;

	snprintf(corpus, sizeof(corpus), "%s/tests/fuzz/corpus/%s", repo_root(),
		 target);
	snprintf(crashes, sizeof(crashes), "%s/tests/fuzz/crashes/%s",
		 repo_root(), target);
	n = replay_dir(corpus, one) + replay_dir(crashes, one);
	if (n == 0)
		fail_msg("%s: no files in %s or %s", target, corpus, crashes);
	print_message("# %s: replayed %d files\n", target, n);
}

#define REPLAY_TEST(t)                                                         \
	static void test_replay_##t(void **state)                              \
	{                                                                      \
		(void)state;                                                   \
		replay_target(#t, t##_one);                                    \
	}
REPLAY_TARGETS(REPLAY_TEST)
#undef REPLAY_TEST

int main(void)
{
#define REPLAY_ENTRY(t) cmocka_unit_test(test_replay_##t),
	const struct CMUnitTest tests[] = {REPLAY_TARGETS(REPLAY_ENTRY)};
#undef REPLAY_ENTRY

	return cmocka_run_group_tests(tests, NULL, NULL);
}
