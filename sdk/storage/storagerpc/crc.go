package storagerpc

import "hash/crc32"

// castagnoli is the CRC-32C table of the write trailer.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)
