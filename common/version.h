/* The programs' own version (ota-gateway --version, ota-device --version). */
#ifndef OTA_VERSION_H
#define OTA_VERSION_H

#define OTA_VERSION "0.13.0"

#endif
