# Run by `cmake --install` (tools/dist/CMakeLists.txt): writes the systemd units with the paths of
# this installation, known only now (`cmake --install --prefix DIR` changes the prefix after
# configuration). Inputs: P2M_DIST_SRC, P2M_DIST_WORK, P2M_BINDIR, P2M_SYSCONFDIR, P2M_UNITDIR.
foreach(var P2M_BINDIR P2M_SYSCONFDIR P2M_UNITDIR)
    if(NOT IS_ABSOLUTE "${${var}}")
        set(${var} "${CMAKE_INSTALL_PREFIX}/${${var}}")
    endif()
endforeach()
set(P2M_CONFDIR "${P2M_SYSCONFDIR}/pipe2me")
set(units)
foreach(unit pipe2me-registrar.service pipe2me-relay.service pipe2me-pod@.service)
    configure_file("${P2M_DIST_SRC}/${unit}.in" "${P2M_DIST_WORK}/${unit}" @ONLY)
    list(APPEND units "${P2M_DIST_WORK}/${unit}")
endforeach()
file(INSTALL DESTINATION "${P2M_UNITDIR}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES ${units})
