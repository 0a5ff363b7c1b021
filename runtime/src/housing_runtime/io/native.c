/* The batch runtime's hot loops in C: CSV and JSON Lines text to float64 rows, float32
 * predictions to numpy's text. Loaded by native.py through ctypes; compiled by the build backend
 * (runtime/setup.py: into the wheel, or in place by make all's editable install) into
 * _native.abi3.so, from this file alone, with the system's C compiler.
 *
 * Why C: numpy's loadtxt and Dragon4 formatter are C already, but general; at 1M rows they
 * were two thirds of the CLI's time. These loops do only the common, plain case.
 *
 * The rule that keeps them safe: each function either does its whole job exactly as the
 * Python path (csv_rows.py, jsonl.py, lines.py, floattext.py) would, or returns NOT_MINE and leaves the whole
 * chunk to the Python path, which then accepts, or refuses with its own words. So every
 * input the C code accepts is one the Python path accepts, with bit-identical values, and
 * everything unusual (quotes, spaces, blank lines, escapes, nan, huge numbers, a bad value)
 * takes the Python path. Nothing here makes an error message.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOT_MINE (-1)
/* A number longer than this (digits and all) is left to the Python path. */
#define MAX_NUMBER_CHARS 64
/* Significant digits kept exactly in a uint64 (10^19 < 2^64). */
#define MAX_EXACT_DIGITS 19
/* JSON integers: Python makes an int and numpy converts it; beyond 15 digits the conversion
 * is left to them (an int and a decimal string round alike there, but we do not rely on it). */
#define MAX_JSON_INT_DIGITS 15

typedef unsigned __int128 u128;

static locale_t c_locale;

/* Called once by native.py: strtod_l reads numbers in the C locale, whatever the process's. */
int native_init(void)
{
    if (!c_locale)
        c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    return c_locale != (locale_t)0;
}

/* Exactly representable powers of ten: 10^22 = 2^22 * 5^22 and 5^22 < 2^53. */
static const double EXACT_POW10[23] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_digit(char c) { return (unsigned char)(c - '0') < 10; }

static const uint64_t POW10_U64[20] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
    1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL,
    100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
    1000000000000000000ULL, 10000000000000000000ULL};

static uint64_t double_bits(double v) { union { double d; uint64_t u; } as = {v}; return as.u; }
static double bits_double(uint64_t u) { union { uint64_t u; double d; } as = {u}; return as.d; }

/* m / 10^q correctly rounded to float64 (round half to even), for 0 < m < 2^64 and
 * 1 <= q <= 19: the 17-digit decimals that Clinger's path cannot take (m > 2^53). Returns 0
 * when it cannot decide, and strtod_l does.
 *
 * (double)m / 10^q is within about one ulp of the exact quotient x. For a candidate
 * v = M 2^e (M the 53-bit significand), x rounds to v iff it lies between the midpoints to v's
 * neighbours, (4M - 2) 2^(e-2) (or (4M - 1) 2^(e-2) when M = 2^52: the lower neighbour is half
 * as far) and (4M + 2) 2^(e-2). Multiplied by 10^q 2^(2-e), that is an exact comparison of
 * m 2^(2-e) with (4M -+ 2) 10^q, all below 2^128. A candidate that fails moves one ulp toward
 * x and is tested again. */
static int exact_quotient(uint64_t m, int q, double *out)
{
    double v = (double)m / EXACT_POW10[q];
    int m_bits = 64 - __builtin_clzll(m);
    for (int step = 0; step < 4; step++) {
        uint64_t bits = double_bits(v);
        int biased = (int)(bits >> 52);
        if (biased == 0 || biased >= 0x7FF)
            return 0;
        uint64_t M = (bits & ((1ULL << 52) - 1)) | (1ULL << 52);
        int shift = 2 - (biased - 1075);      /* v = M 2^(biased - 1075) */
        if (shift < 0 || m_bits + shift > 127)
            return 0;
        u128 x = (u128)m << shift;
        u128 p10 = POW10_U64[q];
        u128 low = (u128)(4 * M - (M == (1ULL << 52) ? 1 : 2)) * p10, high = (u128)(4 * M + 2) * p10;
        if (x > high) {
            v = bits_double(bits + 1);        /* x is above v's interval: the next double up */
        } else if (x < low) {
            v = bits_double(bits - 1);
        } else {
            if ((x == high || x == low) && (M & 1))
                v = bits_double(x == high ? bits + 1 : bits - 1);   /* a tie: to the even one */
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* ---- Numbers ---------------------------------------------------------------------------
 * CSV: what numpy's loadtxt reads as float64 (it calls Python's correctly rounded
 * PyOS_string_to_double), restricted to [+-]? digits [. digits] [eE [+-] digits], at least
 * one mantissa digit, nothing around it. JSON: the JSON grammar -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?
 * exactly as Python's json module parses it.
 *
 * Value: correctly rounded to float64, as both Python paths are. Clinger's fast path when the
 * significant digits fit 2^53 and the power of ten is exact (one IEEE operation on exact
 * operands is correctly rounded); up to 19 digits and 19 decimals, exact_quotient; otherwise
 * glibc's strtod_l, also correctly rounded. A result
 * that is not finite (1e999) is NOT_MINE: the Python path names it. */
/* One more digit of a number: into the mantissa while MAX_EXACT_DIGITS significant digits
 * (leading zeros are not) fit, else it marks the number a strtod_l case. Returns whether the
 * digit was kept. */
static int take_digit(char c, uint64_t *mantissa, int *significant, int *beyond)
{
    if (*significant >= MAX_EXACT_DIGITS) {
        *beyond = 1;
        return 0;
    }
    *mantissa = *mantissa * 10 + (uint64_t)(c - '0');
    *significant += *mantissa != 0;
    return 1;
}

static const char *parse_number(const char *p, const char *end, int json, double *value)
{
    const char *start = p;
    int negative = 0;
    if (p < end && (*p == '-' || (!json && *p == '+'))) {
        negative = *p == '-';
        p++;
    }
    uint64_t mantissa = 0;
    int significant = 0, beyond = 0, frac_digits = 0;
    const char *int_start = p;
    while (p < end && is_digit(*p))
        take_digit(*p++, &mantissa, &significant, &beyond);
    int int_digits = (int)(p - int_start);
    if (json && (int_digits == 0 || (int_digits > 1 && *int_start == '0')))
        return NULL;                      /* JSON: no ".5", no "+1", no "01" */
    int has_point = p < end && *p == '.';
    if (has_point) {
        p++;
        const char *frac_start = p;
        while (p < end && is_digit(*p))
            frac_digits += take_digit(*p++, &mantissa, &significant, &beyond);
        if (int_digits == 0 && p == frac_start)
            return NULL;                  /* "." alone */
        if (json && p == frac_start)
            return NULL;                  /* JSON: no "5." */
    } else if (int_digits == 0) {
        return NULL;                      /* no digits at all */
    }
    int has_exponent = p < end && (*p == 'e' || *p == 'E');
    long exponent = 0;
    if (has_exponent) {
        p++;
        int exp_negative = p < end && *p == '-';
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *exp_start = p;
        while (p < end && is_digit(*p)) {
            if (exponent < 100000)        /* beyond that, strtod_l's business */
                exponent = exponent * 10 + (*p - '0');
            p++;
        }
        if (p == exp_start)
            return NULL;                  /* "1e" */
        if (exp_negative)
            exponent = -exponent;
    }
    if (p - start > MAX_NUMBER_CHARS)
        return NULL;
    int json_int = json && !has_point && !has_exponent;
    if (json_int && int_digits > MAX_JSON_INT_DIGITS)
        return NULL;
    long power = exponent - frac_digits;  /* value = mantissa 10^power when nothing is beyond */
    double v;   /* the magnitude; the sign goes on last (IEEE negation is exact) */
    if (!beyond && mantissa <= (1ULL << 53) && power >= -22 && power <= 22) {
        v = power >= 0 ? (double)mantissa * EXACT_POW10[power] : (double)mantissa / EXACT_POW10[-power];
    } else if (!(!beyond && mantissa && power < 0 && power >= -19 && exact_quotient(mantissa, (int)-power, &v))) {
        char text[MAX_NUMBER_CHARS + 1];
        size_t n = (size_t)(p - int_start);
        memcpy(text, int_start, n);
        text[n] = '\0';
        char *stop;
        v = strtod_l(text, &stop, c_locale);
        if (stop != text + n)
            return NULL;
    }
    if (negative)
        v = -v;
    if (!(v - v == 0))                    /* inf (1e999): the Python path names it */
        return NULL;
    if (json_int && v == 0)
        v = 0.0;                          /* JSON "-0" is Python's int 0, so +0.0 */
    *value = v;
    return p;
}

/* ---- Lines -----------------------------------------------------------------------------
 * A block is the text readers.line_blocks yields: lines separated by '\n', the last one
 * without it. Lines are numbered from 0. */

/* Where the line starting at p ends. */
static const char *line_end_of(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

/* The index of the first line longer than max_chars, or -1. */
long long native_first_long_line(const char *text, long long len, long long max_chars)
{
    const char *p = text, *end = text + len;
    for (long long line = 0; p <= end; line++) {
        const char *line_end = line_end_of(p, end);
        if (line_end - p > max_chars)
            return line;
        p = line_end + 1;
    }
    return -1;
}

/* Past the spaces and tabs at p: JSON's blanks within a line. */
static const char *skip_blanks(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

/* CSV rows: up to max_rows lines from offset *at of the block, each exactly n_cols plain
 * numbers separated by ','. Column c's value goes to out[row * n_cols + dest[c]] (model
 * feature order). Returns the rows read and moves *at to the next line's offset (past len
 * when the block is done), or NOT_MINE for the whole chunk (nothing is consumed). */
long long native_parse_csv(const char *text, long long len, long long *at, int n_cols, const int *dest,
                           long long max_rows, double *out)
{
    const char *p = text + *at, *end = text + len;
    long long row = 0;
    while (row < max_rows && p <= end) {
        const char *line_end = line_end_of(p, end);
        double *values = out + row * n_cols;
        for (int c = 0; c < n_cols; c++) {
            double v;
            const char *q = parse_number(p, line_end, 0, &v);
            if (!q)
                return NOT_MINE;
            if (c < n_cols - 1 ? (q == line_end || *q != ',') : q != line_end)
                return NOT_MINE;  /* a short, long or ragged row */
            values[dest[c]] = v;
            p = q + 1;
        }
        row++;
        p = line_end + 1;
    }
    *at = p - text;
    return row;
}

/* JSON Lines rows: up to max_rows lines from offset *at, each one object {"key": number, ...}
 * holding each of the n_keys feature names exactly once (in any order), written without
 * escapes; spaces and tabs may sit between tokens, none before '{' or after '}'. Key k's value
 * goes to out[row * n_keys + k]. keys: the names, each ended by '\0'. Returns as
 * native_parse_csv does. */
long long native_parse_jsonl(const char *text, long long len, long long *at, int n_keys, const char *keys,
                             long long max_rows, double *out)
{
    const char *names[64];
    size_t lengths[64];
    if (n_keys < 1 || n_keys > 64)
        return NOT_MINE;
    for (int k = 0; k < n_keys; k++) {
        names[k] = keys;
        lengths[k] = strlen(keys);
        keys += lengths[k] + 1;
    }
    const char *p = text + *at, *end = text + len;
    long long row = 0;
    while (row < max_rows && p <= end) {
        const char *line_end = line_end_of(p, end);
        double *values = out + row * n_keys;
        uint64_t seen = 0;
        if (p == line_end || *p != '{')
            return NOT_MINE;
        p++;
        for (int pair = 0; pair < n_keys; pair++) {
            p = skip_blanks(p, line_end);
            if (p == line_end || *p != '"')
                return NOT_MINE;
            const char *key = ++p;
            while (p < line_end && *p != '"' && *p != '\\')
                p++;
            if (p == line_end || *p != '"')
                return NOT_MINE;
            size_t key_len = (size_t)(p - key);
            p++;
            /* Records usually list the features in order: try that one first. */
            int k = pair;
            if (!(lengths[k] == key_len && memcmp(names[k], key, key_len) == 0)) {
                for (k = 0; k < n_keys; k++)
                    if (lengths[k] == key_len && memcmp(names[k], key, key_len) == 0)
                        break;
                if (k == n_keys)
                    return NOT_MINE;  /* an unknown key */
            }
            if (seen & (1ULL << k))
                return NOT_MINE;      /* a key given twice */
            seen |= 1ULL << k;
            p = skip_blanks(p, line_end);
            if (p == line_end || *p != ':')
                return NOT_MINE;
            p = skip_blanks(p + 1, line_end);
            double v;
            const char *q = parse_number(p, line_end, 1, &v);
            if (!q)
                return NOT_MINE;
            values[k] = v;
            p = skip_blanks(q, line_end);
            if (p == line_end)
                return NOT_MINE;
            if (*p != (pair < n_keys - 1 ? ',' : '}'))
                return NOT_MINE;  /* a missing or extra key, or junk */
            p++;
        }
        if (p != line_end)
            return NOT_MINE;
        row++;
        p = line_end + 1;
    }
    *at = p - text;
    return row;
}

/* ---- float32 text ----------------------------------------------------------------------
 * numpy's str() of a float32 x, as floattext.py describes it: positional when
 * 1e-4 <= |x| < 1e6, digits the shortest that round back to x (Dragon4's "unique" mode).
 *
 * Dragon4, for the k-th fraction digit position (k may be negative): let T = floor(|x| 10^k)
 * and U = T + 1. It stops at the first k where T / 10^k lies strictly above the low end of
 * x's rounding interval or U / 10^k strictly below the high end (exclusive bounds), and
 * writes T if only T does, U if only U does, and the nearer if both do (a tie goes to the
 * even digit). Here every comparison is exact integer arithmetic on |x| = M / 2^s (M the
 * 24-bit significand): the interval's ends are (4M - 2) / 2^(s+2) and (4M + 2) / 2^(s+2),
 * the lower one (4M - 1) / 2^(s+2) at a power of two (its lower neighbour is half as far).
 * A candidate exactly on an end, or a tie, is left to numpy, as are values outside the
 * positional range, subnormals, inf and nan (zero is written here: "0.0", "-0.0"). */

/* |x|'s shortest digits: D and k with |x| ~ D / 10^k; 0 if numpy must decide. */
static int shortest(uint32_t bits, uint64_t *digits, int *fraction_digits)
{
    uint32_t biased = (bits >> 23) & 0xFF, fraction = bits & 0x7FFFFF;
    if (biased == 0 || biased == 0xFF)
        return 0;                           /* zero and subnormals, inf and nan */
    union { uint32_t u; float f; } as = {bits & 0x7FFFFFFF};
    double a = as.f;
    if (!(a >= 1e-4 && a < 1e6))            /* exact: no double lies between 1e-4 and its float64 */
        return 0;
    uint64_t M = fraction | 0x800000;
    int s = 150 - (int)biased;              /* |x| = M / 2^s; s >= 4 here */
    uint64_t low_gap = fraction == 0 ? 1 : 2;
    /* e = floor(log10 |x|), from exact comparisons with powers of ten */
    int e = -4;
    static const double P10[] = {1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    while (a >= P10[e + 5])
        e++;
    for (int k = -e; k <= 12; k++) {
        uint64_t P = k > 0 ? POW10_U64[k] : 1, Q = k < 0 ? POW10_U64[-k] : 1;
        /* |x| 10^k = M P / (Q 2^s) */
        uint64_t num = M * P;               /* < 2^24 10^12 < 2^64 */
        uint64_t den = Q << s;              /* < 10^6 2^37 < 2^64 when Q > 1, else 2^s <= 2^37 */
        uint64_t T = num / den, rem = num % den;
        /* c / 10^k against (4M +- gap) / 2^(s+2): c Q 2^(s+2) against (4M +- gap) P */
        u128 scale = (u128)Q << (s + 2);
        u128 low = (u128)(4 * M - low_gap) * P, high = (u128)(4 * M + 2) * P;
        u128 t = (u128)T * scale, u = (u128)(T + 1) * scale;
        /* Exactly on an end: numpy's rules decide. No float32 in range meets this (all 279M
         * were checked), but the code then never relies on the ends being exclusive. */
        if (t == low || u == high)
            return 0;
        int t_in = T > 0 && t > low, u_in = u < high;
        if (!t_in && !u_in)
            continue;
        uint64_t chosen;
        if (t_in && u_in) {
            if (2 * rem == den)
                return 0;                   /* a tie: numpy's even-digit rule */
            chosen = 2 * rem < den ? T : T + 1;
        } else {
            chosen = t_in ? T : T + 1;
        }
        *digits = chosen;
        *fraction_digits = k;
        return 1;
    }
    return 0;
}

/* Writes v's decimal digits ending just before end; returns where they start. */
static char *digits_before(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* "-"? int "." frac, frac without trailing zeros but at least one digit. */
static char *write_positional(char *out, int negative, uint64_t D, int k)
{
    uint64_t int_part, frac_part = 0;
    int frac_digits = 0;
    if (k <= 0) {
        int_part = D * POW10_U64[-k];
    } else {
        int_part = D / POW10_U64[k];
        frac_part = D % POW10_U64[k];
        frac_digits = k;
        while (frac_digits > 0 && frac_part % 10 == 0) {
            frac_part /= 10;
            frac_digits--;
        }
    }
    if (negative)
        *out++ = '-';
    char buffer[24];
    char *start = digits_before(buffer + sizeof buffer, int_part);
    size_t n = (size_t)(buffer + sizeof buffer - start);
    memcpy(out, start, n);
    out += n;
    *out++ = '.';
    if (frac_digits == 0) {
        *out++ = '0';
        return out;
    }
    for (int i = frac_digits - 1; i >= 0; i--) {
        out[i] = (char)('0' + frac_part % 10);
        frac_part /= 10;
    }
    return out + frac_digits;
}

/* Each x[i] as numpy's text followed by sep, into out (room for n * (NATIVE_MAX_TEXT +
 * sep_len) bytes). A value numpy must format is written as its separator alone; its index and
 * the offset where its text belongs go to deferred[2j], deferred[2j + 1]. Returns the bytes
 * written; *n_deferred gets the count. */
#define NATIVE_MAX_TEXT 20
long long native_max_text(void) { return NATIVE_MAX_TEXT; }

long long native_format_float32(const float *x, long long n, const char *sep, int sep_len, char *out,
                                long long *deferred, long long *n_deferred)
{
    char *p = out;
    long long d = 0;
    for (long long i = 0; i < n; i++) {
        union { float f; uint32_t u; } as = {x[i]};
        uint32_t bits = as.u;
        int negative = (int)(bits >> 31);
        uint64_t D;
        int k;
        if ((bits & 0x7FFFFFFF) == 0) {     /* numpy writes 0.0 and -0.0 */
            p = write_positional(p, negative, 0, 0);
        } else if (shortest(bits, &D, &k)) {
            p = write_positional(p, negative, D, k);
        } else {
            deferred[2 * d] = i;
            deferred[2 * d + 1] = p - out;
            d++;
        }
        memcpy(p, sep, (size_t)sep_len);
        p += sep_len;
    }
    *n_deferred = d;
    return p - out;
}
