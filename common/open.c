/* open.c — opening a file that input names, for reading (see wp.h). */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wp.h"

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a file";
}

int wp_open_read(const char *path, wp_err *e)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever; O_NOCTTY: a terminal never becomes ours. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        wp_fail_errno(e, "%s: cannot open", path);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        wp_fail_errno(e, "%s: cannot stat", path);
        close(fd);
        errno = err;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        wp_fail(e, WP_EINVAL, "%s: not a regular file (%s)", path, kind_of(st.st_mode));
        close(fd);
        errno = EINVAL;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int err = errno;
        wp_fail_errno(e, "%s: cannot open", path);
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}
