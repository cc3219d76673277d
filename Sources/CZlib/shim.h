// zlib (Debian's zlib1g-dev): raw deflate and inflate for zip archives (skill exports and imports), and CRC-32.
#include <zlib.h>
