/* A fresh temporary directory for each test, removed with everything in it
 * afterwards: cmocka setup/teardown for the unit tests that touch files. */
#ifndef OTA_TEST_FIXTURE_H
#define OTA_TEST_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

struct fx {
	char root[64];	/* the directory */
	char path[128]; /* root/<name given to fx_setup_named> */
};

static int fx__rm(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static inline int fx_setup_named(void **state, const char *name)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/ota-unit.XXXXXX");
	if (!mkdtemp(f->root)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/%s", f->root, name);
	*state = f;
	return 0;
}

static inline int fx_teardown(void **state)
{
	struct fx *f = *state;
	nftw(f->root, fx__rm, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

#endif
