/*
 * crashpoint.so: an LD_PRELOAD interposer for the crash-point tests
 * (tests/system/test_crashpoints.sh, test_gw_crashpoints.sh). It counts
 * every state-changing file-system call a program makes on files under
 * given directories, logs each one, and can cut power (SIGKILL of the
 * whole process group) right before or right after the Nth.
 *
 * Counted: open/openat/creat that create or truncate, write, pwrite,
 * writev, pwritev, fsync, fdatasync, ftruncate, truncate, rename(at),
 * unlink(at), symlink(at), link, mkdir, rmdir. Only calls that reach the
 * dynamic linker are seen: the programs' own calls and those of shared
 * libraries such as LMDB, not those libc makes inside itself (stdio).
 *
 * Environment (nothing happens without OTA_CP_DIRS):
 *   OTA_CP_DIRS  colon-separated directories; calls on paths under them count
 *   OTA_CP_EXE   only count in a process whose executable has this name
 *   OTA_CP_LOG   append "N kind path" per counted call, "cut N when kind
 *                path" at the cut
 *   OTA_CP_AT    cut at the Nth call (1-based) ...
 *   OTA_CP_WHEN  ... "before" it (default) or "after" it
 *   OTA_CP_BASE  calls counted before an execv (set by this library on
 *                execv, so a program that re-executes itself keeps counting)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define DIRS_MAX 4

static char g_dirs[DIRS_MAX][PATH_MAX];
static int g_ndirs;
static int g_log = -1;
static unsigned long g_at;
static int g_after;
static unsigned long g_count;
static int g_on;

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static ssize_t raw_write(int fd, const void *buf, size_t n)
{
	static ssize_t (*w)(int, const void *, size_t);
	if (!w)
		w = REAL(write);
	return w(fd, buf, n);
}

__attribute__((constructor)) static void cp_init(void)
{
	const char *dirs = getenv("OTA_CP_DIRS"), *exe = getenv("OTA_CP_EXE");
	const char *log = getenv("OTA_CP_LOG"), *at = getenv("OTA_CP_AT");
	const char *when = getenv("OTA_CP_WHEN"), *base = getenv("OTA_CP_BASE");
	char self[PATH_MAX];
	if (!dirs || !*dirs)
		return;
	if (exe && *exe) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0)
			return;
		self[n] = '\0';
		const char *b = strrchr(self, '/');
		if (strcmp(b ? b + 1 : self, exe) != 0)
			return;
	}
	for (const char *p = dirs; *p && g_ndirs < DIRS_MAX;) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n > 0 && n < PATH_MAX &&
		    realpath(strndupa(p, n), g_dirs[g_ndirs]))
			g_ndirs++;
		p += n + (e ? 1 : 0);
	}
	if (log && *log) {
		static int (*o)(const char *, int, ...);
		o = REAL(open);
		g_log = o(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	}
	g_at = at ? strtoul(at, NULL, 10) : 0;
	g_after = when && !strcmp(when, "after");
	g_count = base ? strtoul(base, NULL, 10) : 0;
	g_on = g_ndirs > 0;
}

/* Is this path (made absolute and its directory resolved) under a dir? */
static int under(int dirfd, const char *path)
{
	char full[PATH_MAX * 2], dir[PATH_MAX * 2], *slash;
	if (!g_on || !path)
		return 0;
	if (path[0] == '/') {
		snprintf(full, sizeof(full), "%s", path);
	} else {
		char base[PATH_MAX], link[64];
		ssize_t n;
		if (dirfd == AT_FDCWD) {
			if (!getcwd(base, sizeof(base)))
				return 0;
		} else {
			snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
			if ((n = readlink(link, base, sizeof(base) - 1)) < 0)
				return 0;
			base[n] = '\0';
		}
		snprintf(full, sizeof(full), "%s/%s", base, path);
	}
	/* The file itself may not exist yet: resolve its directory. */
	snprintf(dir, sizeof(dir), "%s", full);
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return 0;
	for (int i = 0; i < g_ndirs; i++) {
		size_t l = strlen(g_dirs[i]);
		if (!strncmp(real, g_dirs[i], l) &&
		    (real[l] == '\0' || real[l] == '/'))
			return 1;
		/* the directory itself (fsync of a directory fd, mkdir) */
		if (!strcmp(full, g_dirs[i]))
			return 1;
	}
	return 0;
}

static int fd_under(int fd, char *path, size_t n)
{
	struct stat st;
	char link[64];
	ssize_t len;
	if (!g_on || fd < 0 || fstat(fd, &st) != 0 ||
	    !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((len = readlink(link, path, n - 1)) < 0)
		return 0;
	path[len] = '\0';
	return under(AT_FDCWD, path);
}

static void note(unsigned long n, const char *kind, const char *path,
		 const char *cut)
{
	char line[PATH_MAX + 128];
	int len;
	if (g_log < 0)
		return;
	if (cut)
		len = snprintf(line, sizeof(line), "cut %lu %s %s %s\n", n, cut,
			       kind, path);
	else
		len =
		    snprintf(line, sizeof(line), "%lu %s %s\n", n, kind, path);
	if (len > 0)
		raw_write(g_log, line,
			  (size_t)len < sizeof(line) ? (size_t)len
						     : sizeof(line) - 1);
}

static void power_cut(void)
{
	kill(0, SIGKILL); /* the whole process group, as a power cut */
	raise(SIGKILL);
}

/* Before a counted call: its number, and the cut when it is "before". */
static unsigned long pre(const char *kind, const char *path)
{
	unsigned long n = __atomic_add_fetch(&g_count, 1, __ATOMIC_SEQ_CST);
	note(n, kind, path, NULL);
	if (n == g_at && !g_after) {
		note(n, kind, path, "before");
		power_cut();
	}
	return n;
}

static void post(unsigned long n, const char *kind, const char *path)
{
	if (n == g_at && g_after) {
		int e = errno;
		note(n, kind, path, "after");
		power_cut();
		errno = e;
	}
}

#define FD_CALL(kind, fd, call)                                                \
	do {                                                                   \
		char p_[PATH_MAX];                                             \
		if (!fd_under(fd, p_, sizeof(p_)))                             \
			return call;                                           \
		unsigned long n_ = pre(kind, p_);                              \
		__typeof__(call) r_ = call;                                    \
		post(n_, kind, p_);                                            \
		return r_;                                                     \
	} while (0)

#define PATH_CALL(kind, dirfd, path, call)                                     \
	do {                                                                   \
		if (!under(dirfd, path))                                       \
			return call;                                           \
		unsigned long n_ = pre(kind, path);                            \
		__typeof__(call) r_ = call;                                    \
		post(n_, kind, path);                                          \
		return r_;                                                     \
	} while (0)

static int creates(int flags) { return flags & (O_CREAT | O_TRUNC); }

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (!creates(flags))
		return REAL(open)(path, flags, mode);
	PATH_CALL("open", AT_FDCWD, path, REAL(open)(path, flags, mode));
}

int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (!creates(flags))
		return REAL(open64)(path, flags, mode);
	PATH_CALL("open", AT_FDCWD, path, REAL(open64)(path, flags, mode));
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (!creates(flags))
		return REAL(openat)(dirfd, path, flags, mode);
	PATH_CALL("open", dirfd, path, REAL(openat)(dirfd, path, flags, mode));
}

int creat(const char *path, mode_t mode)
{
	PATH_CALL("open", AT_FDCWD, path, REAL(creat)(path, mode));
}

ssize_t write(int fd, const void *buf, size_t n)
{
	FD_CALL("write", fd, REAL(write)(fd, buf, n));
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	FD_CALL("pwrite", fd, REAL(pwrite)(fd, buf, n, off));
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	FD_CALL("pwrite", fd, REAL(pwrite64)(fd, buf, n, off));
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	FD_CALL("writev", fd, REAL(writev)(fd, iov, cnt));
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	FD_CALL("pwritev", fd, REAL(pwritev)(fd, iov, cnt, off));
}

int fsync(int fd) { FD_CALL("fsync", fd, REAL(fsync)(fd)); }

int fdatasync(int fd) { FD_CALL("fdatasync", fd, REAL(fdatasync)(fd)); }

int ftruncate(int fd, off_t len)
{
	FD_CALL("ftruncate", fd, REAL(ftruncate)(fd, len));
}

int truncate(const char *path, off_t len)
{
	PATH_CALL("truncate", AT_FDCWD, path, REAL(truncate)(path, len));
}

int rename(const char *from, const char *to)
{
	PATH_CALL("rename", AT_FDCWD, to, REAL(rename)(from, to));
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
	PATH_CALL("rename", fd2, to, REAL(renameat)(fd1, from, fd2, to));
}

int unlink(const char *path)
{
	PATH_CALL("unlink", AT_FDCWD, path, REAL(unlink)(path));
}

int unlinkat(int dirfd, const char *path, int flags)
{
	PATH_CALL("unlink", dirfd, path, REAL(unlinkat)(dirfd, path, flags));
}

int symlink(const char *target, const char *path)
{
	PATH_CALL("symlink", AT_FDCWD, path, REAL(symlink)(target, path));
}

int symlinkat(const char *target, int dirfd, const char *path)
{
	PATH_CALL("symlink", dirfd, path, REAL(symlinkat)(target, dirfd, path));
}

int link(const char *from, const char *to)
{
	PATH_CALL("link", AT_FDCWD, to, REAL(link)(from, to));
}

int mkdir(const char *path, mode_t mode)
{
	PATH_CALL("mkdir", AT_FDCWD, path, REAL(mkdir)(path, mode));
}

int rmdir(const char *path)
{
	PATH_CALL("rmdir", AT_FDCWD, path, REAL(rmdir)(path));
}

/* A program that re-executes itself (the device's restart) keeps its
 * count: the next image starts from it. */
int execv(const char *path, char *const argv[])
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lu",
		 __atomic_load_n(&g_count, __ATOMIC_SEQ_CST));
	if (g_on)
		setenv("OTA_CP_BASE", buf, 1);
	return REAL(execv)(path, argv);
}
