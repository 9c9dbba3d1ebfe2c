/*
 * actors/shell_help.h - the commands of the remote shell, with their usage
 * and help. Shared by parleyd (the `help` command) and parley-shell
 * (`help` offline, and completion of command names), so that both always
 * tell the same.
 */
#ifndef PARLEY_ACTORS_SHELL_HELP_H
#define PARLEY_ACTORS_SHELL_HELP_H

typedef struct chat_shell_help {
    const char *name;    /* first word of the command line */
    const char *usage;   /* the whole syntax */
    const char *summary; /* one line */
    const char *text;    /* what it shows or does, and its limits */
} chat_shell_help_t;

/* Every command, ended by an entry whose name is NULL. */
extern const chat_shell_help_t chat_shell_help[];

/* The entry of `name`, or NULL. */
const chat_shell_help_t *chat_shell_help_find(const char *name);

#endif /* PARLEY_ACTORS_SHELL_HELP_H */
