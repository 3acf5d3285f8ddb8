//! Image references and the image -> host binary mapping the process runtime uses.
