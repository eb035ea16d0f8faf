# Cluster-pool IPAM (operator/cluster_pool.*): the pure allocator (unit-tested alone) and the
# controller that nodepath-operator's main starts once it leads.
add_library(np_cluster_pool_core STATIC ${CMAKE_CURRENT_LIST_DIR}/cluster_pool.cpp)
target_include_directories(np_cluster_pool_core PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(np_cluster_pool_core PUBLIC np_core)
target_compile_options(np_cluster_pool_core PRIVATE ${NP_WARNINGS})
add_library(np_cluster_pool STATIC ${CMAKE_CURRENT_LIST_DIR}/cluster_pool_controller.cpp)
target_link_libraries(np_cluster_pool PUBLIC np_cluster_pool_core np_k8s)
target_compile_options(np_cluster_pool PRIVATE ${NP_WARNINGS} -Wno-mismatched-new-delete)
# nodepath-operator is defined in operator/CMakeLists.txt (added before this file is included).
target_link_libraries(nodepath-operator PRIVATE np_cluster_pool)
