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

uint64_t wp_peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

int wp_path_join(char *out, size_t outsz, const char *dir, const char *name)
{
    size_t n = strlen(dir);
    int w = (n && dir[n - 1] == '/') ? snprintf(out, outsz, "%s%s", dir, name)
                                     : snprintf(out, outsz, "%s/%s", dir, name);
    return (w < 0 || (size_t)w >= outsz) ? -1 : 0;
}
