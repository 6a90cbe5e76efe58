// OpenMPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, ...) are macros over
// addresses of global structs, which Swift cannot import: expose them as prefixed functions.
#ifndef CONTRAST_CMPI_SHIM_H
#define CONTRAST_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm CMPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm CMPI_COMM_NULL(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype CMPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype CMPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype CMPI_INT(void) { return MPI_INT; }
static inline MPI_Datatype CMPI_INT64(void) { return MPI_INT64_T; }
static inline MPI_Datatype CMPI_UINT16(void) { return MPI_UINT16_T; }
static inline MPI_Datatype CMPI_BYTE(void) { return MPI_BYTE; }
static inline MPI_Op CMPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op CMPI_MAX(void) { return MPI_MAX; }
static inline MPI_Op CMPI_MIN(void) { return MPI_MIN; }
static inline void *CMPI_IN_PLACE(void) { return MPI_IN_PLACE; }
static inline MPI_Request CMPI_REQUEST_NULL(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *CMPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *CMPI_STATUSES_IGNORE(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Op CMPI_OP_NULL(void) { return MPI_OP_NULL; }
static inline MPI_Errhandler CMPI_ERRORS_RETURN(void) { return MPI_ERRORS_RETURN; }
static inline int CMPI_SUCCESS(void) { return MPI_SUCCESS; }
static inline int CMPI_THREAD_FUNNELED(void) { return MPI_THREAD_FUNNELED; }
static inline int CMPI_MAX_ERROR_STRING(void) { return MPI_MAX_ERROR_STRING; }
static inline int CMPI_MAX_LIBRARY_VERSION_STRING(void) { return MPI_MAX_LIBRARY_VERSION_STRING; }

#endif
