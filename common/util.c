/* util.c — clocks, peak RSS, paths. */
#include "common/wp.h"

#include <string.h>
#include <time.h>

double wp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One "Key: N kB" field of /proc/self/status, in bytes; 0 if unknown. */
static uint64_t status_kb(const char *fmt)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, fmt, &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

uint64_t wp_peak_rss_bytes(void) { return status_kb("VmHWM: %llu kB"); }
uint64_t wp_rss_bytes(void) { return status_kb("VmRSS: %llu kB"); }

int wp_path_join(char *out, size_t outsz, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    int w = (n && dir[n - 1] == '/') ? snprintf(out, outsz, "%s%s", dir, name)
                                     : snprintf(out, outsz, "%s/%s", dir, name);
    return (w < 0 || (size_t)w >= outsz) ? -1 : 0;
}
