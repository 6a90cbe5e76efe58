#define _GNU_SOURCE
#include "CBuildID.h"
#include <elf.h>
#include <link.h>
#include <string.h>

typedef struct { unsigned char *out; size_t capacity; int length; } build_id_search;

// The first object dl_iterate_phdr reports is the executable itself: scan its PT_NOTE segments.
static int visit(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    build_id_search *search = data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *note = (const ElfW(Nhdr) *)p;
            const unsigned char *name = p + sizeof(ElfW(Nhdr));
            const unsigned char *desc = name + ((note->n_namesz + 3) & ~3u);
            if (desc + note->n_descsz > end) break;
            if (note->n_type == NT_GNU_BUILD_ID && note->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                size_t n = note->n_descsz < search->capacity ? note->n_descsz : search->capacity;
                memcpy(search->out, desc, n);
                search->length = (int)n;
                return 1;
            }
            p = desc + ((note->n_descsz + 3) & ~3u);
        }
    }
    return 1;  // only the executable
}

int ck_build_id(unsigned char *out, size_t capacity) {
    build_id_search search = { out, capacity, 0 };
    dl_iterate_phdr(visit, &search);
    return search.length;
}
